// Channels between a security VM and its target (channel.ts: pure choice and transports) and
// the remote channel's credentials (tls.ts).
export * from "./channel.ts";
export * from "./rotation.ts";
export * from "./tls.ts";
