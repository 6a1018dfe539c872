"""The dashboard's HTML templates (Jinja2, autoescaped), inline CSS, no script.

Kept apart from the rendering code so the markup can be read in one place.
Everything shown comes from Marathon apps, labels and rules, which are hostile
input: the environment escapes every ``{{ }}`` and no template marks anything
``|safe``.
"""

from __future__ import annotations

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2630;background:#f4f6f8}
header{background:#1d2b3a;color:#fff;padding:10px 18px;display:flex;gap:18px;
align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#cfe3ff}
nav a{margin-right:12px}main{padding:12px 18px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;margin:0 0 14px;
padding:10px 14px}
h2{font-size:15px;margin:2px 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #edf0f3;vertical-align:top}
th{font-size:12px;color:#5b6b7b;text-transform:uppercase}
.kv{display:flex;gap:16px;flex-wrap:wrap}.kv div{min-width:110px}
.kv b{display:block;font-size:18px}.muted{color:#6b7886;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;
background:#e7edf3;margin:1px}
.UP{background:#d4f4dd}.DOWN{background:#ffd9d6}.MAINT,.DRAIN,.NOLB{background:#ffefc7}
.rule{background:#dfe9ff}.label{background:#eee}.warn{background:#fff4d6;
border-color:#f1d48a}.bad{background:#ffe6e3;border-color:#f2b3ab}
.err{color:#a31b0e;font-weight:600}
input[type=text],input:not([type]),textarea,select{font:inherit;padding:3px 5px;
border:1px solid #b9c4cf;border-radius:4px}textarea{width:100%}
button{font:inherit;padding:3px 10px;border-radius:4px;border:1px solid #52708f;
background:#2d5d8c;color:#fff;cursor:pointer}button.secondary{background:#fff;color:#2d5d8c}
pre.diff{background:#0f1720;color:#dfe6ee;padding:8px;overflow:auto;max-height:360px}
.pager a,.pager span{margin-right:8px}
form.inline{display:inline}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:0 18px}
.grid input:not([type=checkbox]),.grid textarea{max-width:100%;box-sizing:border-box}
.grid .wide{grid-column:1/-1}pre.diff .add{color:#8fe39b}pre.diff .del{color:#ff9a8f}
label.f{display:block;margin:6px 0 2px;font-weight:600}
"""

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ title }} - servicerouter</title><style>{{ css }}</style></head>
<body><header><h1>servicerouter</h1>
{% if build.version %}<span class="muted">{{ build.version }} · HAProxy {{ build.haproxy }}
</span>{% endif %}
<nav><a href="/">Services</a><a href="/rules">Rules</a>{% if not session.token_required %}
<a href="/status">/status</a>{% endif %}</nav>
<span style="margin-left:auto">{% if session.signed_in %}
<form class="inline" method="post" action="/signout">
<input type="hidden" name="csrf" value="{{ session.csrf }}">
<button class="secondary" type="submit">Sign out</button></form>
{% elif session.token_required %}<a href="/signin">Sign in</a>{% endif %}</span>
</header><main>{% block body %}{% endblock %}</main></body></html>
"""

DASHBOARD = """{% extends "layout" %}{% block body %}
<section><h2>Sync</h2><div class="kv">
<div><span class="muted">Last sync</span><b>{{ s.last_sync or "never" }}</b>
<span class="muted">{{ s.last_sync_kind or "" }}{% if s.last_sync_duration_seconds is number %}
 in {{ "%.3f"|format(s.last_sync_duration_seconds) }} s{% endif %}</span></div>
<div><span class="muted">Marathon</span><b>{{ s.marathon.host or "-" }}</b>
<span class="muted">{% if s.marathon.available %}available{% else %}OUTAGE since
{{ s.marathon.outage_since }}: {{ s.marathon.error }}{% endif %}</span></div>
<div><span class="muted">Apps / tasks</span><b>{{ s.apps }} / {{ s.tasks }}</b></div>
<div><span class="muted">Syncs</span><b>{{ s.syncs }}</b></div>
<div><span class="muted">Reloads</span><b>{{ s.reloads }}</b>
<span class="muted">{{ s.failed_reloads }} failed</span></div>
<div><span class="muted">Runtime API updates</span><b>{{ s.runtime_updates }}</b>
<span class="muted">{{ s.certificate_updates }} certificate swaps</span></div>
{% if s.haproxy %}<div><span class="muted">HAProxy</span>
<b>{{ "running" if s.haproxy.running else "DOWN" }}</b>
<span class="muted">pid {{ s.haproxy.master_pid }}, {{ s.haproxy.restarts }} restarts</span></div>
{% endif %}{% if s.runtime_api %}<div><span class="muted">Servers via Runtime API</span>
<b>+{{ s.runtime_api.servers_added }} −{{ s.runtime_api.servers_removed }}</b>
<span class="muted">{{ s.runtime_api.draining }} draining</span></div>{% endif %}
{% if s.rules_store %}<div id="rules-store"><span class="muted">Rules store</span>
<b>{{ s.rules_store.rules }} rule{{ "" if s.rules_store.rules == 1 else "s" }}</b><span class="muted">{{ s.rules_store.backend }}:
{% if s.rules_store.connected %}connected{% else %}DISCONNECTED (last known rules route)
{{ s.rules_store.last_error }}{% endif %}</span></div>{% endif %}
</div>{% if s.last_sync_error %}<p class="err">Last sync failed: {{ s.last_sync_error }}</p>
{% endif %}</section>

{% if hold.held %}<section class="warn" id="hold"><h2>Held removal</h2>
<p>{{ hold.reason }} (since {{ hold.since }}, applied after {{ hold.apply_after }}):
{{ hold.servers_lost }} of {{ hold.servers_before }} servers,
{{ hold.backends_lost }} of {{ hold.backends_before }} backends would go.</p>
{% if hold.sample_backends %}<p class="muted">e.g. {{ hold.sample_backends|join(", ") }}</p>
{% endif %}</section>{% endif %}

{% if s.quarantined %}<section class="bad" id="quarantine"><h2>Quarantined apps
({{ s.quarantined|length }})</h2><table><tr><th>App</th><th>Reason</th><th>Since</th>
<th>Cause</th><th>Frozen ports</th></tr>{% for q in s.quarantined %}<tr><td>{{ q.app }}</td>
<td>{{ q.reason }}</td><td>{{ q.since }}</td><td>{{ q.cause }}</td>
<td>{{ q.frozen_services }}</td></tr>{% endfor %}</table></section>{% endif %}

{% if s.conflicts %}<section class="warn" id="conflicts"><h2>Route conflicts
({{ s.conflicts|length }})</h2><table><tr><th>Route</th><th>Owner</th><th>Lost by</th></tr>
{% for c in s.conflicts[:100] %}<tr><td>{{ c.route }}</td><td>{{ c.owner }}</td>
<td>{% for l in c.losers %}<span class="tag">{{ l.app }}:{{ l.port_index }}</span>
{% endfor %}</td></tr>{% endfor %}</table></section>{% endif %}

<section id="services"><h2>Services ({{ page.matching }}{% if page.query %} matching
“{{ page.query }}”{% endif %} of {{ page.total }})</h2>
<form method="get" action="/"><input name="q" value="{{ page.query }}"
 placeholder="filter: app, host, path, backend" size="40">
<button type="submit">Filter</button></form>
{% if states_error %}<p class="muted">Server states unavailable: {{ states_error }}</p>{% endif %}
<table id="services-table"><tr><th>App</th><th>Mode</th><th>Bind</th><th>Vhosts / paths</th>
<th>Origin</th><th>Servers (HAProxy state)</th></tr>
{% for r in page.rows %}<tr class="svc"><td><a href="/rules?id={{ r.app|urlencode }}:{{ r.port_index }}">
{{ r.app }}</a><span class="muted">:{{ r.port_index }}</span></td><td>{{ r.mode }}</td>
<td>{{ r.bind }}</td><td>{% for h in r.vhosts %}<span class="tag">{{ h }}</span>{% endfor %}
{% for p in r.paths %}<span class="tag">{{ p }}</span>{% endfor %}</td>
<td><span class="tag {{ r.origin }}">{{ r.origin }}</span>
{% if r.rule %}<div class="muted">rule: {{ r.rule.hosts|join(" ") }}
{{ r.rule.paths|join(" ") }}</div>{% endif %}
{% if r.label_vhost or r.label_path %}<div class="muted">label: {{ r.label_vhost }}
{{ r.label_path }}{% if r.rule %} (overridden){% endif %}</div>{% endif %}</td>
<td>{% for srv in r.servers %}{% set st = states.get(r.backend, {}).get(srv.name) %}
<div>{{ srv.ipv4 }}:{{ srv.port }} <span class="tag {{ (st.status if st else '')|first_word }}">
{{ st.status if st else ("draining" if srv.draining else "?") }}</span>
{% if st and st.check_status %}<span class="muted">{{ st.check_status }}</span>{% endif %}
</div>{% else %}<span class="muted">no servers</span>{% endfor %}</td></tr>
{% else %}<tr><td colspan="6" class="muted">no services{% if page.query %} match{% endif %}
</td></tr>{% endfor %}</table>
{% if page.pages > 1 %}<p class="pager">{% if page.number > 1 %}
<a href="{{ page.link(page.number - 1) }}">« previous</a>{% endif %}
<span>page {{ page.number }} of {{ page.pages }}</span>{% if page.number < page.pages %}
<a href="{{ page.link(page.number + 1) }}">next »</a>{% endif %}</p>{% endif %}
</section>

{% if s.orphan_rules %}<section id="orphans"><h2>Rules for apps not running</h2>
<p class="muted">Kept and applied once the app exists.</p><ul>{% for r in s.orphan_rules %}
<li><a href="/rules?id={{ r.id|urlencode }}">{{ r.id }}</a> {{ r.hosts|join(" ") }}</li>
{% endfor %}</ul></section>{% endif %}

<section id="certificates"><h2>Certificates ({{ s.certificates|length }})</h2>
{% if s.certificates %}<table><tr><th>Names</th><th>Source</th><th>Expires</th>
<th>Days left</th></tr>{% for c in s.certificates %}<tr{% if c.expiring %} class="warn"{% endif %}>
<td>{{ c.names|join(", ") }}</td><td>{{ c.source }}</td><td>{{ c.not_after }}</td>
<td>{{ c.days_left }}{% if c.expiring %} <b>renew</b>{% endif %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">none</p>{% endif %}</section>

{% if s.problems %}<section id="problems"><h2>Problems ({{ s.problems|length }})</h2><ul>
{% for p in s.problems[:50] %}<li>{{ p }}</li>{% endfor %}</ul></section>{% endif %}
<p class="muted">Rendered {{ now }}.</p>
{% endblock %}"""

SIGNIN = """{% extends "layout" %}{% block body %}<section><h2>Sign in</h2>
{% if not session.token_required %}<p>This router has no <code>--status-token</code>:
the dashboard is read-only (writes need the token).</p>{% else %}
{% if error %}<p class="err">{{ error }}</p>{% endif %}
<form id="signin" method="post" action="/signin"><label class="f" for="token">Admin token
(<code>--status-token</code>)</label><input id="token" type="password" name="token" size="40"
 autocomplete="current-password"> <button type="submit">Sign in</button></form>{% endif %}
</section>{% endblock %}"""

__all__ = ["CSS", "DASHBOARD", "LAYOUT", "SIGNIN"]
