-- servicerouter: marathon-lb's tooling endpoints, served by HAProxy itself on the
-- stats listener (HAPROXY_HEAD.j2 routes the paths here), so they answer in every
-- mode, one-shot runs from cron included, as long as HAProxy runs.
--
--   servicerouter_getconfig    the config this HAProxy process loaded (read once, at init)
--   servicerouter_getvhostmap  domain2backend.map beside that config ("" when absent)
--   servicerouter_getappmap    app2backend.map beside that config ("" when absent)
--   servicerouter_getpids      PIDs of the HAProxy processes started with that config
--                              (old ones still draining included), space-separated
--
-- The config path is the "-f" argument HAProxy was started with; /proc/<pid>/cmdline
-- holds the arguments separated by NUL bytes, so paths with spaces survive.

local function read_all(path)
  local handle = io.open(path, "rb")
  if handle == nil then
    return nil
  end
  local data = handle:read("a")
  handle:close()
  return data
end

local function arguments(pid)
  local raw = read_all("/proc/" .. pid .. "/cmdline") or ""
  local args = {}
  for arg in string.gmatch(raw, "([^\0]*)\0") do
    args[#args + 1] = arg
  end
  return args
end

local function config_path(args)
  for index = 1, #args - 1 do
    if args[index] == "-f" then
      return args[index + 1]
    end
  end
  return nil
end

local started_with = config_path(arguments("self"))
local loaded_config = ""
local config_dir = ""
if started_with ~= nil then
  config_dir = string.match(started_with, "^(.*/)") or ""
end

core.register_init(function()
  if started_with == nil then
    core.Warning("servicerouter endpoints: no -f in HAProxy's command line")
    return
  end
  loaded_config = read_all(started_with) or ""
end)

local function answer(applet, body)
  applet:set_status(200)
  applet:add_header("content-type", "text/plain")
  applet:add_header("content-length", tostring(string.len(body)))
  applet:start_response()
  applet:send(body)
end

core.register_service("servicerouter_getconfig", "http", function(applet)
  answer(applet, loaded_config)
end)

core.register_service("servicerouter_getvhostmap", "http", function(applet)
  answer(applet, read_all(config_dir .. "domain2backend.map") or "")
end)

core.register_service("servicerouter_getappmap", "http", function(applet)
  answer(applet, read_all(config_dir .. "app2backend.map") or "")
end)

core.register_service("servicerouter_getpids", "http", function(applet)
  local pids = {}
  local listing = io.popen("pidof haproxy", "r")
  local found = listing and listing:read("a") or ""
  if listing then
    listing:close()
  end
  for pid in string.gmatch(found, "%d+") do
    if config_path(arguments(pid)) == started_with then
      pids[#pids + 1] = pid
    end
  end
  answer(applet, table.concat(pids, " "))
end)
