/**
 * The bench worker: four contenders, one Durable Object class each, behind
 * `/<contender>/<object name>`.
 */
import { EffectHandlers, PromiseHandlers, RecoveringHandlers } from "./durableWs"
import { measured } from "./measured"
import { Party } from "./party"
import { Raw, RawAttached, RawRecorded } from "./raw"
import type { Validator } from "./validators"
import { validators } from "./validators"

export { BenchEdge, BenchHome } from "./spanning"
export { BenchPresenceEdge, BenchPresenceHome } from "./spanPresence"
export {
  ArktypeObjectValidation,
  ArktypeValidation,
  EffectValidation,
  NoValidation,
  ValibotObjectValidation,
  ValibotValidation,
  ZodObjectValidation,
  ZodValidation
} from "./validators"

/** (a) the floor: the raw Hibernation API. */
export class RawObject extends measured(Raw) {}
/** (b) durable-ws with promise handlers. */
export class PromiseObject extends measured(PromiseHandlers) {}
/** (c) durable-ws with Effect handlers. */
export class EffectObject extends measured(EffectHandlers) {}
/** (d) the peer: partyserver. */
export class PartyObject extends measured(Party) {}
/** (a) writing one SQLite row per rpc before its reply: the floor of a durable record per request. */
export class RawRecordedObject extends measured(RawRecorded) {}
/** (a) keeping each socket's topics in its attachment: the floor of the first publish after a wake. */
export class RawAttachedObject extends measured(RawAttached) {}
/** (b) with `recovery: true`, measured against (b) only. */
export class RecoveryObject extends measured(RecoveringHandlers) {}

/** URL segment → binding. */
export const contenders = {
  raw: "RAW",
  promise: "DWS_PROMISE",
  effect: "DWS_EFFECT",
  party: "PARTY",
  recovery: "DWS_RECOVERY",
  rawRecorded: "RAW_RECORDED",
  rawAttached: "RAW_ATTACHED"
} as const

export type Contender = keyof typeof contenders

export default {
  fetch(request: Request, env: Cloudflare.Env): Promise<Response> | Response {
    const [, kind, name] = new URL(request.url).pathname.split("/")
    const binding = contenders[kind as Contender] ?? validators[kind as Validator]
    if (binding === undefined || name === undefined || name === "") return new Response("not found", { status: 404 })
    const namespace = env[binding]
    return namespace.get(namespace.idFromName(name)).fetch(request)
  }
}
