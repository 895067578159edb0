declare namespace Cloudflare {
  interface Env {
    readonly ROOM: DurableObjectNamespace
    readonly LOBBY: DurableObjectNamespace
    readonly GUARDED: DurableObjectNamespace
    readonly MEMORY: DurableObjectNamespace
    readonly SHARD: DurableObjectNamespace<import("./fixtures/federation").Shard>
    readonly ROUTER: DurableObjectNamespace<import("./fixtures/federation").Shard>
    readonly HARDENED: DurableObjectNamespace
    readonly GATE: DurableObjectNamespace
    readonly LIMITED: DurableObjectNamespace
    readonly REFILLING: DurableObjectNamespace
    readonly CROWD: DurableObjectNamespace
    readonly BROKEN: DurableObjectNamespace
    readonly CLIENT_ROOM: DurableObjectNamespace
    readonly CHAT: DurableObjectNamespace
    readonly THROTTLED: DurableObjectNamespace
    readonly FLOODED: DurableObjectNamespace
    readonly PUBLISHER: DurableObjectNamespace
    readonly TIMED_PUBLISHER: DurableObjectNamespace
    readonly DEADLINE_PUBLISHER: DurableObjectNamespace
    readonly MIXED: DurableObjectNamespace
    readonly DAM: DurableObjectNamespace
    readonly RECOVERING: DurableObjectNamespace
    readonly FORGETFUL: DurableObjectNamespace
    readonly CUTOFF: DurableObjectNamespace
    readonly BOUNDED: DurableObjectNamespace
    readonly UNRECOVERED: DurableObjectNamespace
    readonly VALIDATORS: DurableObjectNamespace
    readonly VALIDATORS_TIMED: DurableObjectNamespace
    readonly VALIDATORS_RECOVERING: DurableObjectNamespace
    readonly WSKIT_CHAT: DurableObjectNamespace
    readonly DEADLINE_ROOM: DurableObjectNamespace
    readonly AUTH_ROOM: DurableObjectNamespace
    readonly PRESENCE_ROOM: DurableObjectNamespace
    readonly PRESENCE_RECOVERING: DurableObjectNamespace
    readonly PRESENCE_COUNTED: DurableObjectNamespace
    readonly SPAN_ROOM: DurableObjectNamespace<import("./fixtures/spanning").SpanRoom>
    readonly SPAN_RECOVERING_ROOM: DurableObjectNamespace<import("./fixtures/spanning").SpanRecoveringRoom>
    readonly ANNOUNCEMENTS: DurableObjectNamespace<import("../examples/chat/worker").Announcements>
    readonly FAULTY_HOME: DurableObjectNamespace<import("./fixtures/spanning").FaultyHome>
    readonly SPAN_PRESENCE_ROOM: DurableObjectNamespace<import("./fixtures/spanPresence").SpanPresenceRoom>
    readonly SPAN_PRESENCE_COUNTED: DurableObjectNamespace<import("./fixtures/spanPresence").SpanPresenceCounted>
    readonly SPAN_PRESENCE_RECOVERING: DurableObjectNamespace<import("./fixtures/spanPresence").SpanPresenceRecovering>
    readonly PRESENCE_HOME: DurableObjectNamespace<import("./fixtures/spanPresence").PresenceHome>
  }
}

// What `wrangler types` generates beside the namespace: the global `Env` that examples name.
interface Env extends Cloudflare.Env {}
