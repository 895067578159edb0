/**
 * Durable Object bindings looked up by name, as spanning topics name them:
 * an edge's address carries its binding, and a home reaches it through the
 * home's own env.
 */
import type { EdgeAddress } from "../../SpanningTopic"

/** The binding `name` of `env`, if it is a Durable Object namespace. */
export const namespaceOf = (env: Cloudflare.Env, name: string): DurableObjectNamespace | undefined => {
  const namespace = (env as unknown as Record<string, Partial<DurableObjectNamespace> | undefined>)[name]
  return typeof namespace?.idFromString === "function" ? namespace as DurableObjectNamespace : undefined
}

/** A stub of the edge at `address`; throws when `env` has no such binding. */
export const edgeStubOf = <Edge>(env: Cloudflare.Env, address: EdgeAddress): Edge => {
  const namespace = namespaceOf(env, address.binding)
  if (namespace === undefined) throw new Error(`durable-ws: no Durable Object binding "${address.binding}" in this home's env`)
  return namespace.get(namespace.idFromString(address.id)) as unknown as Edge
}
