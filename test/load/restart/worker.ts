/**
 * `/room/<name>/…` goes to the object named `<name>` (upgrades, and the
 * fixture's controls: `publish`, `count`); `/` answers 200 once the
 * server is up.
 */
export { Recovering } from "../../fixtures/recovery"

export default {
  fetch(request: Request, env: { readonly RECOVERING: DurableObjectNamespace }): Promise<Response> | Response {
    const url = new URL(request.url)
    const match = /^\/room\/([^/]+)/.exec(url.pathname)
    if (match === null) return new Response("ok")
    return env.RECOVERING.get(env.RECOVERING.idFromName(match[1]!)).fetch(request)
  }
}
