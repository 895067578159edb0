declare namespace Cloudflare {
  interface Env {
    readonly ROOM: DurableObjectNamespace
    readonly LOBBY: DurableObjectNamespace
    readonly GUARDED: DurableObjectNamespace
    readonly MEMORY: DurableObjectNamespace
  }
}

declare namespace Cloudflare {
  interface Env {
    readonly HARDENED: DurableObjectNamespace
    readonly GATE: DurableObjectNamespace
    readonly LIMITED: DurableObjectNamespace
    readonly REFILLING: DurableObjectNamespace
    readonly CROWD: DurableObjectNamespace
    readonly BROKEN: DurableObjectNamespace
  }
}
