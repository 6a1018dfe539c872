"""Events -> mirror changes (servicerouter.source.changes): pure, table-driven."""

from __future__ import annotations

import pytest

from servicerouter.source.changes import (
    HINT_RESYNC_REASON,
    RESYNC_EVENT,
    Change,
    Pending,
    apply_task_event,
    apply_task_events,
    as_hint,
    classify,
    deployment_app_ids,
    index_apps,
)

APP = {
    "id": "/web",
    "portDefinitions": [{"port": 10000}],
    "tasks": [
        {"id": "web.1", "host": "a", "ports": [31000], "state": "TASK_RUNNING"},
        {"id": "web.2", "host": "b", "ports": [31001], "state": "TASK_RUNNING",
         "healthCheckResults": [{"alive": True, "taskId": "web.2"}]},
    ],
}


def status(task_id: str, state: str, host: str = "c", ports: list[int] | None = None,
           app_id: str = "/web") -> dict:
    return {"eventType": "status_update_event", "appId": app_id, "taskId": task_id,
            "taskStatus": state, "host": host, "ports": ports or [31002],
            "ipAddresses": [{"ipAddress": "10.0.0.3", "protocol": "IPv4"}], "version": "v1"}


@pytest.mark.parametrize(("event", "expected"), [
    ({"eventType": "event_stream_attached"}, Change("ignore")),
    ({"eventType": "instance_changed_event"}, Change("ignore")),
    (status("web.3", "TASK_RUNNING"), Change("task", ("/web",))),
    ({"eventType": "health_status_changed_event", "appId": "/web", "instanceId": "web.marathon-1",
      "alive": False}, Change("task", ("/web",))),
    ({"eventType": "app_terminated_event", "appId": "/web"}, Change("remove", ("/web",))),
    ({"eventType": "api_post_event", "appDefinition": {"id": "/web"}}, Change("apps", ("/web",))),
    ({"eventType": "deployment_success",
      "plan": {"steps": [{"actions": [{"action": "ScaleApplication", "app": "/a"},
                                      {"action": "StartApplication", "app": "/b"}]}]}},
     Change("apps", ("/a", "/b"))),
    ({"eventType": "deployment_step_success",
      "currentStep": {"actions": [{"app": "/c"}]}}, Change("apps", ("/c",))),
])
def test_classify(event: dict, expected: Change) -> None:
    assert classify(event) == expected


@pytest.mark.parametrize("event", [
    {},
    {"eventType": 3},
    {"eventType": "status_update_event", "appId": "/web"},  # no task id
    {"eventType": "api_post_event", "appDefinition": "nope"},
    {"eventType": "deployment_info", "plan": {"steps": []}},
    {"eventType": "group_change_success"},
    {"eventType": "something_new_event"},
    {"eventType": RESYNC_EVENT, "reason": "SIGHUP"},
])
def test_unknown_or_unreadable_events_ask_for_a_full_resync(event: dict) -> None:
    assert classify(event).kind == "full"


def test_deployment_app_ids_ignores_junk() -> None:
    event = {"plan": {"steps": ["x", {"actions": [None, {"app": 5}, {"app": "/a"}, {"app": "/a"}]}]},
             "currentStep": {"actions": "nope"}}
    assert deployment_app_ids(event) == ("/a",)


def test_pending_merges_a_burst() -> None:
    pending = Pending()
    assert pending.empty
    pending.add(classify({"eventType": "event_stream_attached"}), {}, 1.0)
    assert pending.empty and pending.first_at is None
    first = status("web.3", "TASK_RUNNING")
    pending.add(classify(first), first, 2.0)
    pending.add(Change("apps", ("/a",)), {}, 3.0)
    pending.add(Change("remove", ("/a",)), {}, 4.0)
    pending.add(Change("apps", ("/b",)), {}, 5.0)
    assert pending.task_events == [first]
    assert pending.refetch == {"/b"} and pending.removed == {"/a"}
    assert pending.first_at == 2.0 and pending.events == 4 and not pending.full
    pending.request_full("SIGHUP")
    pending.request_full("SIGHUP")
    assert pending.full and pending.full_reasons == ["SIGHUP"]


def test_running_task_is_added_and_the_original_is_untouched() -> None:
    updated = apply_task_event(APP, status("web.3", "TASK_RUNNING"))
    assert [t["id"] for t in updated["tasks"]] == ["web.1", "web.2", "web.3"]
    assert updated["tasks"][2]["host"] == "c" and updated["tasks"][2]["ports"] == [31002]
    assert updated["tasks"][2]["ipAddresses"][0]["ipAddress"] == "10.0.0.3"
    assert len(APP["tasks"]) == 2


def test_known_task_is_updated_in_place() -> None:
    updated = apply_task_event(APP, status("web.1", "TASK_RUNNING", host="z", ports=[1]))
    assert [t["id"] for t in updated["tasks"]] == ["web.1", "web.2"]
    assert updated["tasks"][0]["host"] == "z"
    assert APP["tasks"][0]["host"] == "a"


@pytest.mark.parametrize("state", ["TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_FINISHED"])
def test_terminal_states_remove_the_task(state: str) -> None:
    updated = apply_task_event(APP, status("web.1", state))
    assert [t["id"] for t in updated["tasks"]] == ["web.2"]
    assert apply_task_event(APP, status("web.9", state))["tasks"] == APP["tasks"]


def test_staging_tasks_are_listed_as_marathon_lists_them() -> None:
    updated = apply_task_event(APP, status("web.3", "TASK_STAGING"))
    assert updated["tasks"][-1]["state"] == "TASK_STAGING"


def test_health_event_flips_alive() -> None:
    event = {"eventType": "health_status_changed_event", "appId": "/web",
             "instanceId": "web.marathon-2", "alive": False}
    updated = apply_task_event(APP, event)
    assert updated["tasks"][1]["healthCheckResults"] == [{"alive": False, "taskId": "web.2"}]
    event = {"eventType": "health_status_changed_event", "appId": "/web", "taskId": "web.1",
             "alive": True}
    assert apply_task_event(APP, event)["tasks"][0]["healthCheckResults"][0]["alive"] is True


def test_apply_task_events_reports_unknown_apps() -> None:
    apps = index_apps([APP, {"id": "/other", "tasks": "junk"}])
    changed, unknown = apply_task_events(apps, [
        status("web.3", "TASK_RUNNING"), status("web.1", "TASK_KILLED"),
        status("x.1", "TASK_RUNNING", app_id="/new"), status("o.1", "TASK_RUNNING", app_id="/other"),
        {"eventType": "status_update_event", "appId": None},
    ])
    assert unknown == {"/new"}
    assert [t["id"] for t in changed["/web"]["tasks"]] == ["web.2", "web.3"]
    assert [t["id"] for t in changed["/other"]["tasks"]] == ["o.1"]


def test_index_apps_keeps_unreadable_apps_for_the_model_to_report() -> None:
    indexed = index_apps([{"id": "/a"}, "junk", {"id": 5}])
    assert list(indexed)[0] == "/a" and len(indexed) == 3


# --- events nobody vouches for (a callback without a token) ---------------------------

FORGED = [
    status("x", "TASK_RUNNING", host="6.6.6.6", ports=[4444]),  # adds a server
    status("web.1", "TASK_KILLED"),  # removes one
    {"eventType": "health_status_changed_event", "appId": "/web", "taskId": "web.2",
     "alive": False},
    {"eventType": "app_terminated_event", "appId": "/web"},  # removes the app
    {"eventType": "api_post_event", "appDefinition": {"id": "/web", "labels": {"X": "y"}}},
]


@pytest.mark.parametrize("event", FORGED)
def test_a_hint_only_names_the_app_to_refetch(event: dict) -> None:
    """Whatever a forged event claims, all it yields is 'ask Marathon about /web'."""
    assert as_hint(event) == Change("apps", ("/web",))
    pending = Pending()
    pending.add(as_hint(event), event, 1.0)
    assert pending.refetch == {"/web"}
    assert not pending.task_events and not pending.removed  # nothing of it is kept


@pytest.mark.parametrize("event", [
    status("x", "TASK_RUNNING", app_id="/../v2/eventSubscriptions"),
    status("x", "TASK_RUNNING", app_id="/web?embed=x"),
    status("x", "TASK_RUNNING", app_id="web"),
    {"eventType": "app_terminated_event", "appId": "/a/./b"},
    {"eventType": "deployment_success", "plan": {"steps": [{"actions": [{"app": "/a b"}]}]}},
    {"eventType": RESYNC_EVENT, "reason": "forged\nreason"},
    {"eventType": "something_new_event"},
])
def test_a_hint_with_an_odd_app_id_or_none_asks_for_a_resync(event: dict) -> None:
    """Never a request path built from a sender's text; never its text in a log reason."""
    assert as_hint(event) == Change("full", reason=HINT_RESYNC_REASON)


def test_ignored_events_stay_ignored_as_hints() -> None:
    assert as_hint({"eventType": "event_stream_attached"}) == Change("ignore")
    ids = ("/a", "/b.c/d-e_f")
    event = {"eventType": "deployment_info",
             "plan": {"steps": [{"actions": [{"app": i} for i in ids]}]}}
    assert as_hint(event) == Change("apps", ids)
