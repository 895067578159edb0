/**
 * `/room/<name>/…` goes to the `Recovering` object named `<name>`
 * (upgrades, and the fixture's controls: `publish`, `count`, `tables`),
 * `/short/<name>/…` to the `Forgetful` one (sessions expire after 400 ms);
 * `/` answers 200 once the server is up.
 */
export { Forgetful, Recovering } from "../../fixtures/recovery"

interface Env {
  readonly RECOVERING: DurableObjectNamespace
  readonly FORGETFUL: DurableObjectNamespace
}

export default {
  fetch(request: Request, env: Env): Promise<Response> | Response {
    const url = new URL(request.url)
    const match = /^\/(room|short)\/([^/]+)/.exec(url.pathname)
    if (match === null) return new Response("ok")
    const namespace = match[1] === "room" ? env.RECOVERING : env.FORGETFUL
    return namespace.get(namespace.idFromName(match[2]!)).fetch(request)
  }
}
