/**
 * `/room/<name>/…` goes to the `Recovering` object named `<name>`
 * (upgrades, and the fixture's controls: `publish`, `count`, `tables`),
 * `/linger/<name>/…` to the `Lingering` one (sessions expire after 20 s);
 * `/` answers 200 once the server is up.
 */
export { Lingering, Recovering } from "../../fixtures/recovery"

interface Env {
  readonly RECOVERING: DurableObjectNamespace
  readonly LINGERING: DurableObjectNamespace
}

export default {
  fetch(request: Request, env: Env): Promise<Response> | Response {
    const url = new URL(request.url)
    const match = /^\/(room|linger)\/([^/]+)/.exec(url.pathname)
    if (match === null) return new Response("ok")
    const namespace = match[1] === "room" ? env.RECOVERING : env.LINGERING
    return namespace.get(namespace.idFromName(match[2]!)).fetch(request)
  }
}
