"""The rule editor's templates (autoescaped like the rest of the dashboard)."""

from __future__ import annotations

RULES = """{% extends "layout" %}{% block body %}
{% if notice %}<section class="warn" id="notice"><p>{{ notice }}</p></section>{% endif %}
{% if not editor_on %}<section class="warn"><p>Operator rules are not enabled on this
router.</p></section>{% endif %}
{% if editor_on and not session.can_write %}<section class="warn" id="readonly"><p>
{% if session.token_required %}<a href="/signin">Sign in</a> with the admin token to create,
edit or delete rules.{% else %}Read-only: writing rules needs <code>--status-token</code>.
{% endif %}</p></section>{% endif %}

{% if editor_on %}<section id="editor"><h2>{{ "Edit rule " ~ form.id if form.id
else "New rule" }}</h2>
{% if errors %}<p class="err" id="form-error">{{ errors.field }}: {{ errors.message }}</p>
{% endif %}
<form id="rule-form" method="post" action="/rules">
<input type="hidden" name="csrf" value="{{ session.csrf }}">
{% macro err(name) %}{% if errors and errors.field == name %}
<div class="err field-error" data-field="{{ name }}">{{ errors.message }}</div>{% endif %}
{% endmacro %}
<div class="grid">
<div><label class="f" for="app_id">App</label>
<input id="app_id" name="app_id" list="apps" size="40" value="{{ form.app_id }}">
<datalist id="apps">{% for app in apps %}<option value="{{ app }}">{% endfor %}</datalist>
{{ err("app_id") }}</div>
<div><label class="f" for="port_index">Port index</label>
<input id="port_index" name="port_index" size="4" value="{{ form.port_index }}">
{{ err("port_index") }}</div>
<div><label class="f" for="hosts">Hosts <span class="muted">(exact or *.wildcard, blank or
comma separated)</span></label><input id="hosts" name="hosts" size="50"
 value="{{ form.hosts }}">{{ err("hosts") }}</div>
<div><label class="f" for="paths">Path prefixes <span class="muted">(blank separated)</span>
</label><input id="paths" name="paths" size="30" value="{{ form.paths }}">
<label><input type="checkbox" name="path_ignore_case" id="path_ignore_case"
{% if form.path_ignore_case %} checked{% endif %}> ignore case</label>{{ err("paths") }}
{{ err("path_ignore_case") }}</div>
<div><label class="f" for="headers">Header matches <span class="muted">(one a line:
<code>Name = value</code> exact, <code>Name ^= value</code> prefix)</span></label>
<textarea id="headers" name="headers" rows="2">{{ form.headers }}</textarea>
{{ err("headers") }}</div>
<div><label class="f" for="allow_cidrs">Allowed sources <span class="muted">(CIDRs; blank:
everyone)</span></label><input id="allow_cidrs" name="allow_cidrs" size="50"
 value="{{ form.allow_cidrs }}">{{ err("allow_cidrs") }}</div>
<div><label class="f" for="priority">Priority</label>
<input id="priority" name="priority" size="8" value="{{ form.priority }}">{{ err("priority") }}
</div>
<div><label class="f" for="weight">Weight <span class="muted">(share when rules split a
route)</span></label><input id="weight" name="weight" size="8" value="{{ form.weight }}">
{{ err("weight") }}</div>
<div class="wide"><label class="f" for="note">Note</label>
<input id="note" name="note" size="80" value="{{ form.note }}">{{ err("note") }}</div>
</div>
<p><button type="submit" name="action" value="preview" class="secondary" id="preview">Preview
</button> <button type="submit" name="action" value="save" id="save">Save</button>
<a href="/rules">New rule</a></p></form>
{% if preview is not none %}<h2>Config change this rule causes</h2>
{% if preview %}<pre class="diff" id="preview-diff">{% for line in preview.splitlines()
%}<span class="{{ 'add' if line[:1] == '+' else 'del' if line[:1] == '-' else '' }}">{{ line
}}</span>
{% endfor %}</pre>{% else %}
<p class="muted" id="preview-diff">No change to HAProxy's config.</p>{% endif %}{% endif %}
</section>{% endif %}

<section id="rules"><h2>Rules ({{ rules|length }})</h2>
{% if rules %}<table><tr><th>Rule</th><th>Hosts / paths</th><th>Headers</th><th>Sources</th>
<th>Priority</th><th>Weight</th><th>Note</th><th></th></tr>
{% for r in rules %}<tr class="rule-row"><td><a href="/rules?id={{ r.id|urlencode }}">{{ r.id
}}</a>{% if r.id not in routed %} <span class="tag warn">app not running</span>{% endif %}</td>
<td>{% for h in r.hosts %}<span class="tag">{{ h }}</span>{% endfor %}
{% for p in r.paths %}<span class="tag">{{ p }}</span>{% endfor %}</td>
<td>{% for h in r.headers %}<span class="tag">{{ h.name }} {{ "^=" if h.match == "prefix"
else "=" }} {{ h.value }}</span>{% endfor %}</td><td>{{ r.allow_cidrs|join(" ") }}</td>
<td>{{ r.priority }}</td><td>{{ r.weight }}</td><td>{{ r.note }}</td>
<td>{% if session.can_write %}<form class="inline" method="post" action="/rules">
<input type="hidden" name="csrf" value="{{ session.csrf }}">
<input type="hidden" name="id" value="{{ r.id }}">
<button class="secondary" type="submit" name="action" value="delete">Delete</button></form>
{% endif %}</td></tr>{% endfor %}</table>{% else %}<p class="muted">No rules yet: routing
comes from the apps' labels.</p>{% endif %}</section>

<section id="apps-list"><h2>Apps ({{ page.matching }}{% if page.query %} matching
“{{ page.query }}”{% endif %} of {{ page.total }} ports)</h2>
<form method="get" action="/rules"><input name="q" value="{{ page.query }}"
 placeholder="filter: app, host, path" size="40"> <button type="submit">Filter</button></form>
<table><tr><th>App : port</th><th>Routed by</th><th>Labels</th><th>Rule</th></tr>
{% for a in page.rows %}<tr class="app-row"><td>{{ a.app }}:{{ a.port_index }}</td>
<td>{% for h in a.vhosts %}<span class="tag">{{ h }}</span>{% endfor %}
{% for p in a.paths %}<span class="tag">{{ p }}</span>{% endfor %}</td>
<td>{{ a.label_vhost }} {{ a.label_path }}</td><td>{% if a.rule %}
<a href="/rules?id={{ (a.app ~ ':' ~ a.port_index)|urlencode }}">edit</a>{% else %}
<a href="/rules?app={{ a.app|urlencode }}&amp;port={{ a.port_index }}">add</a>{% endif %}
</td></tr>{% endfor %}</table>
{% if page.pages > 1 %}<p class="pager">{% if page.number > 1 %}
<a href="{{ page.link(page.number - 1) }}">« previous</a>{% endif %}
<span>page {{ page.number }} of {{ page.pages }}</span>{% if page.number < page.pages %}
<a href="{{ page.link(page.number + 1) }}">next »</a>{% endif %}</p>{% endif %}</section>

{% if history %}<section id="history"><h2>Recent changes</h2><table><tr><th>When</th>
<th>Who</th><th>Rule</th><th>Change</th></tr>{% for h in history %}<tr><td>{{ h.when }}</td>
<td>{{ h.actor }}</td><td>{{ h.id }}</td><td>{{ h.summary }}</td></tr>{% endfor %}</table>
</section>{% endif %}
{% endblock %}"""

TEMPLATES = {"rules": RULES}

__all__ = ["TEMPLATES"]
