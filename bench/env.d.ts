declare namespace Cloudflare {
  interface Env {
    readonly RAW: DurableObjectNamespace
    readonly DWS_PROMISE: DurableObjectNamespace
    readonly DWS_EFFECT: DurableObjectNamespace
    readonly PARTY: DurableObjectNamespace
    readonly DWS_RECOVERY: DurableObjectNamespace
    readonly RAW_RECORDED: DurableObjectNamespace
    readonly RAW_ATTACHED: DurableObjectNamespace
    readonly V_NONE: DurableObjectNamespace
    readonly V_EFFECT: DurableObjectNamespace
    readonly V_ZOD: DurableObjectNamespace
    readonly V_ZOD_OBJECT: DurableObjectNamespace
    readonly V_VALIBOT: DurableObjectNamespace
    readonly V_VALIBOT_OBJECT: DurableObjectNamespace
    readonly V_ARKTYPE: DurableObjectNamespace
    readonly V_ARKTYPE_OBJECT: DurableObjectNamespace
    readonly BENCH_EDGE: DurableObjectNamespace<import("./worker/spanning").BenchEdge>
    readonly BENCH_HOME: DurableObjectNamespace<import("./worker/spanning").BenchHome>
    readonly BENCH_PRESENCE_EDGE: DurableObjectNamespace<import("./worker/spanPresence").BenchPresenceEdge>
    readonly BENCH_PRESENCE_HOME: DurableObjectNamespace<import("./worker/spanPresence").BenchPresenceHome>
    /** "1" shrinks the bench to a smoke run. */
    readonly BENCH_QUICK?: string
    /** Runs only the scenario whose name starts with it, between idle pauses (bench/profile.mjs). */
    readonly BENCH_PROFILE?: string
  }
}
