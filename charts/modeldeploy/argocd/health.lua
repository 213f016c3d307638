-- Argo CD health of a ModelDeployment (modeldeploy.dev/v1alpha1), read from its status
-- contract (docs/modeldeployment.md, docs/gitops.md). Register it in argocd-cm under
-- resource.customizations.health.modeldeploy.dev_ModelDeployment.
--
--   Progressing  the operator has not seen the latest spec yet, or a rollout is under way
--   Degraded     Stalled=True: rolled back, fetch failed, invalid spec...; stays so until the spec changes
--   Suspended    annotated modeldeploy.dev/paused: "true" (kubectl modeldeploy pause)
--   Healthy      Ready=True and nothing in progress
-- The message is the condition's reason and message, e.g. "RolledBack: version 3: ...".

local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c == nil then
    return ""
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

-- Argo CD hands numbers to Lua as floats: print 25, not 25.0.
local function number(x)
  if type(x) == "number" and x == math.floor(x) then
    return string.format("%d", x)
  end
  return tostring(x)
end

-- status.canary.step is an index into spec.rollout.steps: show it counted from 1, "of N".
local function rollout(canary)
  local text = "canary version " .. tostring(canary.version or "?")
  if canary.step ~= nil then
    text = text .. " at step " .. number(canary.step + 1)
    local steps = obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.steps or nil
    if steps ~= nil then
      text = text .. " of " .. number(#steps)
    end
  end
  if canary.requestedWeight ~= nil then
    text = text .. ", weight " .. number(canary.actualWeight or 0) .. "% (" .. number(canary.requestedWeight) .. "% requested)"
  end
  return text
end

local status = obj.status
local paused = obj.metadata ~= nil and obj.metadata.annotations ~= nil
  and obj.metadata.annotations["modeldeploy.dev/paused"] == "true"

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. number(generation)
  return hs
end

local conditions = status.conditions
local stalled = condition(conditions, "Stalled")
local ready = condition(conditions, "Ready")
local reconciling = condition(conditions, "Reconciling")

if (stalled ~= nil and stalled.status == "True") or (stalled == nil and status.phase == "Degraded") then
  hs.status = "Degraded"
  hs.message = describe(stalled or ready)
  return hs
end

if paused then
  hs.status = "Suspended"
  local what = "paused (modeldeploy.dev/paused)"
  if status.canary ~= nil then
    what = what .. ": " .. rollout(status.canary)
  end
  hs.message = what
  return hs
end

if ready ~= nil and ready.status == "True" and (reconciling == nil or reconciling.status ~= "True") and status.canary == nil then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if status.canary ~= nil then
  hs.message = rollout(status.canary)
  local why = describe(reconciling or ready)
  if why ~= "" then
    hs.message = hs.message .. " (" .. why .. ")"
  end
else
  hs.message = describe(reconciling or ready)
end
if hs.message == "" then
  hs.message = "Waiting for the ModelDeployment to become Ready"
end
return hs
