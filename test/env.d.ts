declare namespace Cloudflare {
  interface Env {
    readonly ROOM: DurableObjectNamespace
    readonly LOBBY: DurableObjectNamespace
    readonly GUARDED: DurableObjectNamespace
    readonly MEMORY: DurableObjectNamespace
    readonly CLIENT_ROOM: DurableObjectNamespace
    readonly CHAT: DurableObjectNamespace
  }
}
