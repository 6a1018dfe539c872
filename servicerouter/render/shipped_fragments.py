"""The built-in Jinja2 fragments (templates/*.j2), compiled: GENERATED, do not edit.

Written by ``python3 -m servicerouter.render.shipped_codegen`` from templates/
(tests/render/test_shipped_fragments.py fails when it is not current).  Per fragment:
the sha256 of the text it was compiled from, the whole output of a text without
expressions (else None), and the function ``compile_plain_template`` makes of it
(None: a template outside its subset, compiled by Jinja2 on first use).
"""

from __future__ import annotations

from typing import Any

from servicerouter.render.plain_runtime import shipped_namespace


def _fragment_env() -> Any:  # the fragment files' sandbox, only if a render falls back
    from servicerouter.render.sandbox import fragment_env

    return fragment_env()


_names = shipped_namespace(_fragment_env)
_getattr, _call, _finalize = _names["_getattr"], _names["_call"], _names["_finalize"]

SHIPPED: dict[str, tuple[str, str | None, Any]] = {
    'HAPROXY_HEAD': (
        '264d765dc80bdb0ece1466aea8232bf90f4164b5f6a59d48d6a84a8c59808711',
        None,
        lambda values: "".join(('global\n  daemon\n', (f"  log {_finalize(_getattr(values['options'], 'haproxy_log'))!s} format raw local0\n" if _getattr(values['options'], 'haproxy_log') in ('stderr', 'stdout') else (f"  log {_finalize(_getattr(values['options'], 'haproxy_log'))!s} local0\n" if _getattr(values['options'], 'haproxy_log') else '  log 127.0.0.1 local0\n  log 127.0.0.1 local1 notice\n')), '  tune.ssl.default-dh-param 2048\n  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets\n  spread-checks 5\n', (f"  stats socket {_finalize(_getattr(values['options'], 'runtime_socket'))!s} mode 600 level admin expose-fd listeners\n" if _getattr(values['options'], 'runtime_socket') else ''), (f"  hard-stop-after {_finalize(_getattr(values['options'], 'hard_stop_after'))!s}\n" if _getattr(values['options'], 'hard_stop_after') else ''), ('  master-worker\n' if _getattr(values['options'], 'master_worker') else ''), (f"  lua-load {_finalize(_getattr(values['options'], 'stats_lua'))!s}\n" if _getattr(values['options'], 'stats_lua') else ''), f"\ndefaults\n  log               global\n  option            dontlognull\n  retries           3\n  option            redispatch 1\n  maxconn           10000\n  timeout connect   5s\n  timeout client    50s\n  timeout server    50s\n  timeout check     5s\n  timeout queue     30s\n  timeout http-request 15s\n  timeout http-keep-alive 15s\n\nlisten stats\n  bind {_finalize(_getattr(values['options'], 'stats_bind_addr'))!s}:{_finalize(_getattr(values['options'], 'stats_port'))!s}\n  mode http\n  stats enable\n  stats uri /haproxy?stats\n  stats refresh 10s\n  monitor-uri /_haproxy_health_check\n", ('  http-request use-service lua.servicerouter_getconfig if { path /_haproxy_getconfig }\n  http-request use-service lua.servicerouter_getvhostmap if { path /_haproxy_getvhostmap }\n  http-request use-service lua.servicerouter_getappmap if { path /_haproxy_getappmap }\n  http-request use-service lua.servicerouter_getpids if { path /_haproxy_getpids }\n' if _getattr(values['options'], 'stats_lua') else ''))),
    ),
    'HAPROXY_HTTP_FRONTEND_HEAD': (
        'cfc1fd8a81eba871fac097e5dd6b7158129382ca4880f875f6aabde6af16db88',
        None,
        lambda values: (f"\nfrontend marathon_http_in\n  bind {_finalize(_getattr(values['options'], 'bind_addr'))!s}:{_finalize(_getattr(values['options'], 'http_port'))!s}\n  mode http\n  option httplog\n" if values['needed'] else ''),
    ),
    'HAPROXY_HTTP_FRONTEND_APPID_HEAD': (
        'c9aee21ba48cc012ebf7a5bb70cecac3d641f29e42d5d1c945ff43d2fc544a15',
        None,
        lambda values: (f"\nfrontend marathon_http_appid_in\n  bind {_finalize(_getattr(values['options'], 'bind_addr'))!s}:{_finalize(_getattr(values['options'], 'appid_port'))!s}\n  mode http\n  option httplog\n" if values['needed'] else ''),
    ),
    'HAPROXY_HTTPS_FRONTEND_HEAD': (
        'e36dd97e989dd482ea72b4feb635a8d710ca98e20c5aa534a4349558dd28399b',
        None,
        lambda values: ("".join(('\nfrontend marathon_https_in\n', (f"  bind {_finalize(_getattr(values['options'], 'bind_addr'))!s}:{_finalize(_getattr(values['options'], 'https_port'))!s} ssl crt-list {_finalize(_getattr(values['options'], 'crt_list'))!s}\n" if _getattr(values['options'], 'crt_list') else f"  bind {_finalize(_getattr(values['options'], 'bind_addr'))!s}:{_finalize(_getattr(values['options'], 'https_port'))!s} ssl crt {_finalize(_getattr(values['options'], 'default_cert'))!s}\n"), '  mode http\n  option httplog\n')) if values['needed'] else ''),
    ),
    'HAPROXY_FRONTEND_HEAD': (
        '51e7955a8ea9c78300e29f233e8ba3281c7729022938a9ff1a6ae547dba07cce',
        None,
        lambda values: f"\nfrontend {values['backend']!s}\n  bind {values['bindAddr']!s}:{values['servicePort']!s}{values['sslCertOptions']!s}{values['bindOptions']!s}\n  mode {values['mode']!s}\n  option {_finalize('httplog' if values['mode'] == 'http' else 'tcplog')!s}\n",
    ),
    'HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS': (
        '4717703796be118c5b297e4ff0bce214e8c2285ddd8b4374c5567c485ca9b9b4',
        '',
        lambda values: '',
    ),
    'HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH': (
        '6b59cbd4af522a3e9b12e24f35ae6d918880581ec609935c6d4029acd9fb757b',
        '',
        lambda values: '',
    ),
    'HAPROXY_BACKEND_HEAD': (
        '72129c6a26eba0624a398888c234a37be1ac9de244ad7c5d4fec32477bc74985',
        None,
        lambda values: "".join((f"\nbackend {values['backend']!s}\n  balance {_finalize(_getattr(_getattr(values['service'], 'settings'), 'balance') or 'roundrobin')!s}\n", ('  hash-type consistent\n' if _getattr(_getattr(values['service'], 'settings'), 'hashed_balance') else ''), f"  mode {values['mode']!s}\n", (f"  http-request redirect scheme https code 301 if !{{ ssl_fc }} {{ dst_port {_finalize(_getattr(values['options'], 'http_port'))!s} }}\n" if values['mode'] == 'http' and _getattr(_getattr(values['service'], 'settings'), 'redirect_to_https') else ''))),
    ),
    'HAPROXY_HTTP_FRONTEND_ACL': (
        '70cdcb86d79c832c54f083499ff682360b6d2e52861fe4ccddf31189805f7403',
        None,
        lambda values: "".join(((f"  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -m end -i {_finalize(values['hostname'][1:])!s}\n" if _call(values['hostname'], 'startswith', '*.') else f"  acl {values['hostAcl']!s} hdr(host) -i {values['hostname']!s}\n  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -i {values['hostname']!s}\n"), f"  use_backend {values['backend']!s} if {values['hostAcl']!s}\n")),
    ),
    'HAPROXY_HTTPS_FRONTEND_ACL': (
        '70cdcb86d79c832c54f083499ff682360b6d2e52861fe4ccddf31189805f7403',
        None,
        lambda values: "".join(((f"  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -m end -i {_finalize(values['hostname'][1:])!s}\n" if _call(values['hostname'], 'startswith', '*.') else f"  acl {values['hostAcl']!s} hdr(host) -i {values['hostname']!s}\n  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -i {values['hostname']!s}\n"), f"  use_backend {values['backend']!s} if {values['hostAcl']!s}\n")),
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH': (
        'de231d4594753dcdd843372f36cdb0b71048a7c74b878a09bd99e4fc009aa7ae',
        None,
        lambda values: "".join(((f"  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -m end -i {_finalize(values['hostname'][1:])!s}\n" if _call(values['hostname'], 'startswith', '*.') else f"  acl {values['hostAcl']!s} hdr(host) -i {values['hostname']!s}\n  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -i {values['hostname']!s}\n"), f"  acl {values['pathAcl']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f"{values['path']!s}\n  use_backend {values['backend']!s} if {values['hostAcl']!s} {values['pathAcl']!s}\n")),
    ),
    'HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH': (
        'de231d4594753dcdd843372f36cdb0b71048a7c74b878a09bd99e4fc009aa7ae',
        None,
        lambda values: "".join(((f"  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -m end -i {_finalize(values['hostname'][1:])!s}\n" if _call(values['hostname'], 'startswith', '*.') else f"  acl {values['hostAcl']!s} hdr(host) -i {values['hostname']!s}\n  acl {values['hostAcl']!s} req.hdr(host),field(1,:) -i {values['hostname']!s}\n"), f"  acl {values['pathAcl']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f"{values['path']!s}\n  use_backend {values['backend']!s} if {values['hostAcl']!s} {values['pathAcl']!s}\n")),
    ),
    'HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS': (
        '0cc8b2ac3e992346d520f5cba77f65582754dec171b3506726536a9a99232a0c',
        None,
        lambda values: "".join(((f"  option httpchk GET {values['healthCheckPath']!s}\n" if values['healthCheckProtocol'] in ('HTTP', 'MESOS_HTTP') and values['healthCheckPath'] else ''), f"  timeout check {values['healthCheckTimeoutSeconds']!s}s\n")),
    ),
    'HAPROXY_BACKEND_STICKY_OPTIONS': (
        '68c10495f9059363b68368855a83d9bd498cd343374469a957080c6cebe682c8',
        None,
        lambda values: f"  cookie {_finalize(_getattr(_getattr(values['service'], 'settings'), 'sticky_cookie') or 'mesosphere_server_id')!s} insert indirect nocache dynamic\n  dynamic-cookie-key {values['dynamicCookieKey']!s}\n",
    ),
    'HAPROXY_HTTP_BACKEND_REDIR': (
        '3edce3617fda388875344cbabb136d628c78164be81392f055a086207e3d14c5',
        None,
        None,
    ),
    'HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE': (
        '95116cc2098b1b2f5e16ebabdc92ded3ab91e10321951a5b5f51a16d1b0075ff',
        None,
        lambda values: "".join(((f"  http-request set-header Host {values['hostname']!s}\n" if values['hostname'] and (not _call(values['hostname'], 'startswith', '*.')) else ''), f"  http-request replace-path '^{_finalize(values['proxypathRegex'])!s}/?(.*)' '/\\1'\n")),
    ),
    'HAPROXY_HTTP_BACKEND_REVPROXY_GLUE': (
        '5c9c72dd92c739cb548b7f3ae6ae74b784ca90fd60a2459ddd34072de059c838',
        None,
        lambda values: (f"  http-response replace-header Location '^(https?://{_finalize(values['hostnameRegex'])!s}(:[0-9]+)?)?(/.*)$' '{_finalize(values['rootpathFmt'])!s}'\n" if values['hostnameRegex'] else f"  http-response replace-header Location '^(/.*)$' '{_finalize(values['rootpathFmt'])!s}'\n"),
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_ONLY': (
        'a02b309e12c1b8615daf3818f4d1aa420b1adb92a38f8e6561df47db13a909ff',
        None,
        lambda values: f"  acl host_{values['cleanedUpHostname']!s} hdr(host) -i {values['hostname']!s}\n",
    ),
    'HAPROXY_HTTP_FRONTEND_ROUTING_ONLY': (
        'baec706abd22e0ef44934dd7c5274b578926f0ada7429ee6c59367776b0785f5',
        None,
        lambda values: f"  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s}\n",
    ),
    'HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH': (
        '6edbf6788c6500387689bffc0562c349257f29ae2033e45fa36c160636913aab',
        None,
        lambda values: f'''  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n  http-request auth realm "{values['realm']!s}" if host_{values['cleanedUpHostname']!s} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s}\n''',
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH': (
        '5f16720db147855416329cfe380d5b4595a259900970c7efa2d6dc09b415acd5',
        None,
        lambda values: f'''  acl host_{values['cleanedUpHostname']!s} hdr(host) -i {values['hostname']!s}\n  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n  http-request auth realm "{values['realm']!s}" if host_{values['cleanedUpHostname']!s} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s}\n''',
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH': (
        'fba2c62d0d6f23993a0369b0baf517b5cb57173945143d8fe2001840a9035e1f',
        None,
        lambda values: "".join((f"  acl host_{values['cleanedUpHostname']!s} hdr(host) -i {values['hostname']!s}\n  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n  acl path_{values['backend']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f'''{values['path']!s}\n  http-request auth realm "{values['realm']!s}" if host_{values['cleanedUpHostname']!s} path_{values['backend']!s} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s} path_{values['backend']!s}\n''')),
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH': (
        '7e553b824a907769f1f5fb31fd5c42139757f6efda3e7f80a0535228ab560de0',
        None,
        lambda values: "".join((f"  acl path_{values['backend']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f"{values['path']!s}\n")),
    ),
    'HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH': (
        'f6706cc3d5c1c02ff7f4b19cd06b5b55e5a5081977f202a720c3cd9c7ea41c1a',
        None,
        lambda values: "".join((f"  acl path_{values['backend']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f"{values['path']!s}\n  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n")),
    ),
    'HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH': (
        'c379402f69071f2b9ea2e6df2164869f9300a9ff2f601a6498950ca192232472',
        None,
        lambda values: f"  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s} path_{values['backend']!s}\n",
    ),
    'HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH': (
        'c83e5d9bbbd375f8c154a0ba365921b5f97562a17a82eb45a1f003d5bdfebd2c',
        None,
        lambda values: f'''  http-request auth realm "{values['realm']!s}" if host_{values['cleanedUpHostname']!s} path_{values['backend']!s} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if host_{values['cleanedUpHostname']!s} path_{values['backend']!s}\n''',
    ),
    'HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH': (
        '85cfa3b6e179929f8d62fa7efe060acf3b858f36cffd04b92e62055183c13a19',
        None,
        lambda values: f'''  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n  http-request auth realm "{values['realm']!s}" if {{ req.hdr(host),field(1,:) -i {values['hostname']!s} }} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if {{ req.hdr(host),field(1,:) -i {values['hostname']!s} }}\n''',
    ),
    'HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH': (
        'c99e6a9ec158a93282e9587021ba623f7baef656c710d9f87213a836ce5ccb3f',
        None,
        lambda values: f'''  acl auth_{values['cleanedUpHostname']!s} http_auth(user_{values['backend']!s})\n  http-request auth realm "{values['realm']!s}" if {{ req.hdr(host),field(1,:) -i {values['hostname']!s} }} path_{values['backend']!s} !auth_{values['cleanedUpHostname']!s}\n  use_backend {values['backend']!s} if {{ req.hdr(host),field(1,:) -i {values['hostname']!s} }} path_{values['backend']!s}\n''',
    ),
    'HAPROXY_HTTPS_FRONTEND_ACL_ONLY_WITH_PATH': (
        '7e553b824a907769f1f5fb31fd5c42139757f6efda3e7f80a0535228ab560de0',
        None,
        lambda values: "".join((f"  acl path_{values['backend']!s} path_beg ", ('-i ' if values['pathIgnoreCase'] else ''), f"{values['path']!s}\n")),
    ),
    'HAPROXY_MAP_HTTP_FRONTEND_ACL': (
        'ac8907843fed3b79d23c7c5cc83359ec91b86c0eded93c108554a71eb8a57fff',
        None,
        lambda values: f"  use_backend %[req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map)] if {{ req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map) -m found }}\n",
    ),
    'HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY': (
        'ac8907843fed3b79d23c7c5cc83359ec91b86c0eded93c108554a71eb8a57fff',
        None,
        lambda values: f"  use_backend %[req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map)] if {{ req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map) -m found }}\n",
    ),
    'HAPROXY_MAP_HTTPS_FRONTEND_ACL': (
        'ac8907843fed3b79d23c7c5cc83359ec91b86c0eded93c108554a71eb8a57fff',
        None,
        lambda values: f"  use_backend %[req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map)] if {{ req.hdr(host),lower,regsub(:.*$,,),map({values['haproxy_dir']!s}/domain2backend.map) -m found }}\n",
    ),
    'HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL': (
        'fff899ca6a68322d8cdfd3fd7a5ac30fc6c16a5b406eeaa8358f9e2ba44248c7',
        None,
        lambda values: f"  use_backend %[req.hdr(x-marathon-app-id),lower,map({values['haproxy_dir']!s}/app2backend.map)] if {{ req.hdr(x-marathon-app-id),lower,map({values['haproxy_dir']!s}/app2backend.map) -m found }}\n",
    ),
}
