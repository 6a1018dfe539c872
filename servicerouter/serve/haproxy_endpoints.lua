-- servicerouter: marathon-lb's tooling endpoints, served by HAProxy itself on the
-- stats listener (HAPROXY_HEAD.j2 routes the paths here), so they answer in every
-- mode, one-shot runs from cron included, as long as HAProxy runs.
--
--   servicerouter_getconfig    the config this HAProxy process loaded (read once, at init)
--   servicerouter_getvhostmap  marathon-lb's domain2backend.map beside that config when the
--                              config reads it (--haproxy-map, or a template naming it);
--                              otherwise the same "host backend" lines made from the
--                              engine's own vhost maps (exact hosts without a path, then
--                              wildcards as "*.domain"), "" when there are none
--   servicerouter_getappmap    app2backend.map likewise; otherwise the engine's app-id
--                              maps ("/app/id backend")
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

-- The map files the config on disk names in its map block (render/routing.py writes
-- "#map-file PATH" lines after its last marker line), read per request: the files
-- follow Runtime API map changes, which need no reload.
local MARKER = "\n# servicerouter map entries:"

local function engine_maps(config)
  local start, last = nil, 0
  repeat
    local found = string.find(config, MARKER, last + 1, true)
    if found ~= nil then
      start, last = found, found
    end
  until found == nil
  local paths = {}
  if start == nil then
    return paths
  end
  for path in string.gmatch(string.sub(config, start), "\n#map%-file ([^\n]+)") do
    paths[#paths + 1] = path
  end
  return paths
end

-- marathon-lb's "key backend" lines from the engine's maps whose file name matches
-- one of `kinds` (name pattern -> function turning a key into marathon-lb's, or nil).
local function mlb_lines(kinds)
  local config = read_all(started_with or "") or ""
  local out, seen = {}, {}
  for _, path in ipairs(engine_maps(config)) do
    local name = string.match(path, "([^/]+)$") or ""
    for pattern, convert in pairs(kinds) do
      if string.match(name, pattern) then
        for key, backend in string.gmatch(read_all(path) or "", "([^%s]+) ([^%s]+)\n") do
          local shown = convert(key)
          if shown ~= nil and not seen[shown] then
            seen[shown] = true
            out[#out + 1] = shown .. " " .. backend .. "\n"
          end
        end
      end
    end
  end
  return table.concat(out)
end

-- marathon-lb's own file when the config on disk reads it, else nil.
local function mlb_file(name)
  local path = config_dir .. name
  local config = read_all(started_with or "") or ""
  if string.find(config, path, 1, true) == nil then
    return nil
  end
  return read_all(path) or ""
end

local function exact_host(key)  -- "host/" (no path) -> "host"
  return string.match(key, "^([^/]+)/$")
end

local function wildcard(key)  -- ".example.com" -> "*.example.com"
  return "*" .. key
end

core.register_service("servicerouter_getvhostmap", "http", function(applet)
  answer(applet, mlb_file("domain2backend.map") or mlb_lines({
    ["^http%-%d+%-beg%.map$"] = exact_host, ["^https%-%d+%-beg%.map$"] = exact_host,
    ["^http%-%d+%-end%.map$"] = wildcard, ["^https%-%d+%-end%.map$"] = wildcard,
  }))
end)

core.register_service("servicerouter_getappmap", "http", function(applet)
  answer(applet, mlb_file("app2backend.map") or mlb_lines({
    ["^appid%-%d+%-str%.map$"] = function(key) return key end,
  }))
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
