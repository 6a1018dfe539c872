"""The registry of config fragments: every fragment's name, scope and the names it may use.

A fragment file (default or the operator's) is checked against its entry here when
loaded (:mod:`servicerouter.render.fragments`), and ``--longhelp`` and the README's
tables are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass

HEALTHCHECK_PLACEHOLDERS = (
    "healthCheck",
    "healthCheckPortIndex",
    "healthCheckProtocol",
    "healthCheckPath",
    "healthCheckTimeoutSeconds",
    "healthCheckIntervalSeconds",
    "healthCheckIgnoreHttp1xx",
    "healthCheckGracePeriodSeconds",
    "healthCheckMaxConsecutiveFailures",
    "healthCheckFalls",
)

# Extra names every Jinja2 fragment may use, beyond its legacy placeholders.
JINJA_GLOBAL_NAMES = ("options", "services")
JINJA_SERVICE_NAMES = ("service", "app", "labels", "servers", "vhosts", "bindOptions")
JINJA_SERVER_NAMES = ("server",)
JINJA_VHOST_NAMES = ("vhost", "hostAcl", "path", "pathAcl")


@dataclass(frozen=True, slots=True)
class FragmentSpec:
    """A fragment name, where it goes, what it may use, and what it is for."""

    name: str
    scope: str  # "global", "service", "vhost" or "server"
    placeholders: tuple[str, ...]
    help: str
    strip_prefix: bool = False  # servicerouter.py stripped these and prefixed one space
    jinja_extra: tuple[str, ...] = ()  # names only .j2 files of this fragment get

    @property
    def jinja_names(self) -> tuple[str, ...]:
        names = self.placeholders + self.jinja_extra + JINJA_GLOBAL_NAMES
        if self.scope in ("service", "vhost", "server"):
            names += JINJA_SERVICE_NAMES
        if self.scope == "vhost":
            names += JINJA_VHOST_NAMES
        if self.scope == "server":
            names += JINJA_SERVER_NAMES
        return names


_NEEDED_HELP = (" .j2 files also get needed: whether any service has a rule there (the "
                "default binds nothing otherwise).")
_MAPPED_HELP = (" The built-in file is rendered only for rules a map file cannot hold (the "
                "rest go into the shared frontend's maps); yours always is.")
_MLB_RULE_NAMES = ("cleanedUpHostname", "hostname", "appId", "backend", "path", "realm")
_MLB_RULE_HELP = (" marathon-lb's template: the built-in file is used only when another of this "
                  "port's marathon-lb rule templates is changed; cleanedUpHostname is its ACL "
                  "name (first vhost and app id), the userlist user_<backend>.")
_MAP_HELP = ("With --haproxy-map: the {frontend}'s line routing through marathon-lb's "
             "{{haproxy_dir}}/{file} (haproxy_dir: the config's directory).")
FRAGMENTS: tuple[FragmentSpec, ...] = (
    FragmentSpec("HAPROXY_HEAD", "global", (),
                 "Head of the config: global settings, defaults and the stats listener."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_HEAD", "global", (),
                 "Shared HTTP frontend (:80) gathering every virtual host." + _NEEDED_HELP,
                 jinja_extra=("needed",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_APPID_HEAD", "global", (),
                 "HTTP frontend (:81) routing on the X-Marathon-App-Id header to each app's "
                 "first http-mode port." + _NEEDED_HELP,
                 jinja_extra=("needed",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_HEAD", "global", (),
                 "Shared HTTPS frontend (:443) gathering every virtual host; serves the "
                 "certificate bundles (crt-list) and routes on the Host header." + _NEEDED_HELP,
                 jinja_extra=("needed",)),
    FragmentSpec("HAPROXY_FRONTEND_HEAD", "service",
                 ("backend", "bindAddr", "servicePort", "mode", "sslCertOptions"),
                 "Frontend of one service port: bind address, port and mode (the default "
                 "adds HAPROXY_{n}_BIND_OPTIONS, also given to .j2 files as bindOptions)."),
    FragmentSpec("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS", "service",
                 ("bindAddr", "cleanedUpHostname"),
                 "Added to the port's frontend when HAPROXY_{n}_REDIRECT_TO_HTTPS is set "
                 "(the default is empty: HAPROXY_BACKEND_HEAD redirects in the backend instead, "
                 "only requests that came in on the shared HTTP frontend). marathon-lb's "
                 "str.format text naming {cleanedUpHostname} (its host_ ACL) goes where "
                 "marathon-lb puts it: the shared HTTP frontend, after the port's host ACLs "
                 "(render.mlb_frontend)."),
    FragmentSpec("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH", "service",
                 ("bindAddr", "cleanedUpHostname", "backend"),
                 "marathon-lb's redirect of a port with HAPROXY_{n}_REDIRECT_TO_HTTPS and "
                 "HAPROXY_{n}_PATH, in the shared HTTP frontend after the port's host and "
                 "path ACLs (host_{cleanedUpHostname}, path_{backend}). The default is empty: "
                 "HAPROXY_BACKEND_HEAD's redirect keeps the path; yours (a file here or the "
                 "label) renders the port's HTTP rules marathon-lb's way (render.mlb_frontend)."),
    FragmentSpec("HAPROXY_BACKEND_HEAD", "service", ("backend", "mode"),
                 "Backend of one service port: balance algorithm (HAPROXY_{n}_BALANCE) and "
                 "mode; the default also 301-redirects plain HTTP that came in on the shared "
                 "HTTP frontend for ports with HAPROXY_{n}_REDIRECT_TO_HTTPS."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTP frontend sending one virtual host to its backend." + _MAPPED_HELP),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_APPID_ACL", "service",
                 ("cleanedUpAppId", "hostname", "appId", "backend"),
                 "ACL in the app-id frontend sending one app's requests to its backend." + _MAPPED_HELP),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTPS frontend sending one virtual host to its backend." + _MAPPED_HELP),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend", "path"),
                 "ACL in the shared HTTP frontend sending one virtual host and path prefix "
                 "(HAPROXY_{n}_PATH) to its backend; rendered once per prefix (path), "
                 "longest prefix first. .j2 files also get pathIgnoreCase (true when "
                 "HAPROXY_{n}_PATH starts with -i: match with path_beg -i)." + _MAPPED_HELP,
                 jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend", "path"),
                 "ACL in the shared HTTPS frontend sending one virtual host and path prefix "
                 "(HAPROXY_{n}_PATH) to its backend; rendered once per prefix (path), "
                 "longest prefix first. .j2 files also get pathIgnoreCase (true when "
                 "HAPROXY_{n}_PATH starts with -i: match with path_beg -i)." + _MAPPED_HELP,
                 jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_USERLIST_HEAD", "service",
                 ("backend", "realm", "user", "passwordHash"),
                 "userlist section holding the HAPROXY_{n}_AUTH user, written before the "
                 "port's backend."),
    FragmentSpec("HAPROXY_BACKEND_AUTH_OPTIONS", "service", ("backend", "realm"),
                 "Backend rule answering 401 to requests without the HAPROXY_{n}_AUTH "
                 "credentials."),
    FragmentSpec("HAPROXY_BACKEND_HSTS_OPTIONS", "service", (),
                 "Strict-Transport-Security on HTTPS responses of backends with "
                 "HAPROXY_{n}_USE_HSTS."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_OPTIONS", "service", (),
                 "Options of http-mode backends (X-Forwarded-* headers)."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of http-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_TCP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of tcp-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_STICKY_OPTIONS", "service", (),
                 "Sticky-session cookie of backends with HAPROXY_{n}_STICKY (name from "
                 "HAPROXY_{n}_STICKY_COOKIE in the default). The default sets a dynamic "
                 "cookie keyed by dynamicCookieKey (.j2: secret, stable, per backend), "
                 "so servers need no cookie of their own and scale without a reload.",
                 jinja_extra=("dynamicCookieKey",)),
    FragmentSpec("HAPROXY_BACKEND_SERVER_OPTIONS", "server",
                 ("serverName", "host", "host_ipv4", "port", "cookieOptions",
                  "healthCheckOptions"),
                 "One server line per task. A task being killed (with --health-check) is "
                 "drained: ' weight 0' ends its healthCheckOptions. cookieOptions is empty "
                 "when the backend's sticky fragment set 'cookie ... dynamic' (as the "
                 "default does: HAProxy then derives each server's cookie); .j2: "
                 "dynamicCookie says so.",
                 jinja_extra=("dynamicCookie",)),
    FragmentSpec("HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS", "server",
                 HEALTHCHECK_PLACEHOLDERS,
                 "Per-server health-check options (http mode); stripped, then prefixed "
                 "with one space when not empty.", strip_prefix=True),
    FragmentSpec("HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS", "server",
                 HEALTHCHECK_PLACEHOLDERS,
                 "Per-server health-check options (tcp mode); stripped, then prefixed "
                 "with one space when not empty.", strip_prefix=True),
    FragmentSpec("HAPROXY_FRONTEND_BACKEND_GLUE", "service", ("backend",),
                 "Glues the port's frontend to its backend."),
    # marathon-lb's backend rules, with its template names and placeholders.
    FragmentSpec("HAPROXY_HTTP_BACKEND_NETWORK_ALLOWED_ACL", "service", ("network_allowed",),
                 "http mode: defines the ACL network_allowed from "
                 "HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL (network_allowed: the networks, "
                 "blank-separated); a fixed 'http-request deny if !network_allowed' follows."),
    FragmentSpec("HAPROXY_TCP_BACKEND_NETWORK_ALLOWED_ACL", "service", ("network_allowed",),
                 "tcp mode: as the http one; a fixed 'tcp-request content reject if "
                 "!network_allowed' follows."),
    FragmentSpec("HAPROXY_HTTP_BACKEND_REDIR", "service", ("hostname", "redirpath"),
                 "HAPROXY_{n}_HTTP_BACKEND_REDIR: redirects '/' to redirpath. .j2 files also "
                 "get redirpathFmt (with '%' doubled for log-format) and redirConditions (host "
                 "conditions, one rule each).",
                 jinja_extra=("redirpathFmt", "redirConditions")),
    FragmentSpec("HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE", "service", ("hostname", "proxypath"),
                 "HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH: strips proxypath from request "
                 "paths. .j2 files also get proxypathRegex (the prefix as a regex literal, "
                 "without its trailing '/').",
                 jinja_extra=("proxypathRegex",)),
    FragmentSpec("HAPROXY_HTTP_BACKEND_REVPROXY_GLUE", "service", ("hostname", "rootpath"),
                 "HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH: replaces response Locations on the "
                 "port's host with rootpath. .j2 files also get hostnameRegex and rootpathFmt.",
                 jinja_extra=("hostnameRegex", "rootpathFmt")),
    # marathon-lb's shared-frontend rule templates (render.mlb_frontend): rendered only
    # for a port whose plan names one that is changed (a file here, or the app's label).
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_ONLY", "vhost", _MLB_RULE_NAMES,
                 'Host ACL of one vhost of a port with several vhosts (all under one ACL name).' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ROUTING_ONLY", "vhost", _MLB_RULE_NAMES,
                 'Glues the host ACL of a port with several vhosts to its backend.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH", "vhost", _MLB_RULE_NAMES,
                 'As HAPROXY_HTTP_FRONTEND_ROUTING_ONLY, asking for HAPROXY_{n}_AUTH credentials.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH", "vhost", _MLB_RULE_NAMES,
                 'Host ACL, credentials check and routing of a single-vhost port with HAPROXY_{n}_AUTH.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH", "vhost", _MLB_RULE_NAMES,
                 'As HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH, with HAPROXY_{n}_PATH.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH", "vhost", _MLB_RULE_NAMES,
                 'Path ACL of a port with several vhosts and HAPROXY_{n}_PATH (once per prefix).' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH", "vhost", _MLB_RULE_NAMES,
                 'Path and credentials ACLs of a port with several vhosts, a path and HAPROXY_{n}_AUTH.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH", "vhost", _MLB_RULE_NAMES,
                 'Glues the host and path ACLs of a port with several vhosts to its backend.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH", "vhost", _MLB_RULE_NAMES,
                 'As HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH, asking for credentials.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH", "vhost", _MLB_RULE_NAMES,
                 'HTTPS rule of a vhost of a port with HAPROXY_{n}_AUTH: credentials check and routing.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH", "vhost", _MLB_RULE_NAMES,
                 'As HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH, with HAPROXY_{n}_PATH.' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_ONLY_WITH_PATH", "vhost", _MLB_RULE_NAMES,
                 'Path ACL before the HTTPS rules of a port with HAPROXY_{n}_PATH (once per prefix).' + _MLB_RULE_HELP, jinja_extra=("pathIgnoreCase",)),
    # marathon-lb's --haproxy-map lines (render.mlb_maps): rendered once per shared
    # frontend, for the first app with an entry there (an app's label may replace it).
    FragmentSpec("HAPROXY_MAP_HTTP_FRONTEND_ACL", "service", ("haproxy_dir",),
                 _MAP_HELP.format(frontend="shared HTTP frontend", file="domain2backend.map")),
    FragmentSpec("HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY", "service", ("haproxy_dir",),
                 _MAP_HELP.format(frontend="shared HTTP frontend", file="domain2backend.map")
                 + " Used instead of HAPROXY_MAP_HTTP_FRONTEND_ACL when that app has several "
                 "vhosts, as marathon-lb."),
    FragmentSpec("HAPROXY_MAP_HTTPS_FRONTEND_ACL", "service", ("haproxy_dir",),
                 _MAP_HELP.format(frontend="shared HTTPS frontend", file="domain2backend.map")),
    FragmentSpec("HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL", "service", ("haproxy_dir",),
                 _MAP_HELP.format(frontend="app-id frontend", file="app2backend.map")),
)

FRAGMENTS_BY_NAME: dict[str, FragmentSpec] = {spec.name: spec for spec in FRAGMENTS}
