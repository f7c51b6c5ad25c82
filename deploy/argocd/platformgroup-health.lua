-- Argo CD health of a pmp.dev PlatformGroup, from the operator's status.phase. Runs in Argo
-- CD's sandbox for custom health checks (base and table libraries only, the object as `obj`).
--   Healthy      Running (every member Ready), with the current generation observed
--   Progressing  Starting, Stopping; no status yet; or a status of an older generation
--   Degraded     Degraded, Blocked, or an invalid members' graph (GraphValid False)
--   Suspended    Stopped: the whole stack stopped on purpose (spec.desiredState)
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local function condition(type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local total = status.totalMembers or 0
local counts = status.phaseCounts or {}
local ready = condition("Ready")
local members = (ready and ready.message) or ((status.readyMembers or 0) .. "/" .. total .. " members Ready")

-- Graph errors (a cycle, a missing dependency, a member claimed by two groups) need a fix
-- in the manifests whatever the phase.
local graph = condition("GraphValid")
if status.phase == "Blocked" or (graph ~= nil and graph.status == "False") then
  hs.status = "Degraded"
  hs.message = (graph and graph.message) or ("Blocked: " .. members)
  return hs
end

local phase = status.phase
if phase == "Running" then
  hs.status = "Healthy"
  hs.message = members
elseif phase == "Starting" then
  hs.status = "Progressing"
  hs.message = "starting: " .. members
elseif phase == "Stopping" then
  hs.status = "Progressing"
  hs.message = "stopping: " .. (counts.Stopped or 0) .. "/" .. total .. " members Stopped"
elseif phase == "Stopped" then
  hs.status = "Suspended"
  hs.message = "stopped: " .. total .. " members"
elseif phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = "Degraded: " .. members
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
