/**
 * The agents' HTTP APIs, request and answer shapes alike (TypeBox: requests are validated
 * by fastify, answers serialized by their schema and described in each agent's
 * /v1/openapi.json; the TypeScript types are the schemas' static types, so both sides and
 * the handlers agree). A request that does not match gets 400 with a message naming the
 * field (e.g. "body/memoryMiB must be >= 64"). One file per resource under schemas/.
 */
export * from "./schemas/common.ts";
export * from "./schemas/console.ts";
export * from "./schemas/devices.ts";
export * from "./schemas/guests.ts";
export * from "./schemas/hostvm.ts";
export * from "./schemas/migrations.ts";
export * from "./schemas/placement.ts";
export * from "./schemas/power.ts";
export * from "./schemas/secvms.ts";
export * from "./schemas/server.ts";
