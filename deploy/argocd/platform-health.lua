-- Argo CD health of a pmp.dev Platform, from the operator's status.phase. Runs in Argo CD's
-- sandbox for custom health checks (base and table libraries only, the object as `obj`).
--   Healthy      Running, with the current generation observed
--   Progressing  Pending, WaitingForDependencies, Starting, Stopping; no status yet; or a
--                status that describes an older generation than metadata.generation
--   Degraded     Degraded, Failed, Blocked
--   Suspended    Stopped: stopped on purpose (spec.desiredState, its group's, or a stopped
--                dependency), which is the state asked for, not a fault
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report a status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local health = {
  Running = "Healthy",
  Pending = "Progressing",
  WaitingForDependencies = "Progressing",
  Starting = "Progressing",
  Stopping = "Progressing",
  Degraded = "Degraded",
  Failed = "Degraded",
  Blocked = "Degraded",
  Stopped = "Suspended",
}
-- The operator's messages name the state already ("starting: ...", "blocked: ..."), except
-- these, whose messages alone would not tell which it is.
local prefix = {
  Pending = "Pending: ",
  Degraded = "Degraded: ",
  Failed = "Failed: ",
}

local phase = status.phase
hs.status = health[phase]
if hs.status == nil then
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
  return hs
end
hs.message = (prefix[phase] or "") .. (status.message or phase)
return hs
