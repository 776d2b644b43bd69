/**
 * The OpenStack provider's settings, from (lowest first) the environment (an openrc sourced
 * in the shell), a credentials file in openrc form (`--os-credentials <file>`) and the few
 * `up` flags that carry no secret (`--os-auth-url`, `--os-project`, `--os-image`,
 * `--agent-token-file`, `--agent-network`). Passwords and tokens never come from the command
 * line (it is visible to every user in ps). Parsing is pure; reading files is the caller's.
 */
import { ProviderError } from "../types.ts";
import type { OpenStackRentalOptions } from "./rental.ts";

/** The `up` flags for the openstack provider (none of them a secret). */
export interface OpenStackFlags {
  readonly authUrl?: string;
  readonly project?: string;
  readonly credentials?: string;
  readonly image?: string;
  readonly agentTokenFile?: string;
  readonly agentNetwork?: string;
}

export interface OpenStackSettings extends OpenStackRentalOptions {
  /** The agents' token file (flag, file or NESTCLOUD_AGENT_TOKEN_FILE); none: no guests. */
  readonly agentTokenFile?: string;
  readonly agentNetwork?: string;
}

const MAX_OPENRC_BYTES = 64 * 1024;
const KEY_RE = /^(OS|NESTCLOUD)_[A-Z0-9_]{1,64}$/;

/**
 * An openrc file's assignments: `[export] KEY=value` lines, the value bare, '...' or "...";
 * comments and blank lines skipped. Nothing is evaluated: a value that asks the shell for
 * anything ($, backquote) is refused, as is any line that is not an OS_* / NESTCLOUD_*
 * assignment (an openrc that prompts for the password: put it in the file or the env).
 */
export function parseOpenrc(text: string, name = "credentials file"): Record<string, string> {
  if (Buffer.byteLength(text) > MAX_OPENRC_BYTES)
    throw new ProviderError("invalid", `${name}: larger than ${MAX_OPENRC_BYTES} bytes`);
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(t);
    if (!m) throw new ProviderError("invalid", `${name} line ${i + 1}: not a KEY=value assignment`);
    const [, key, raw] = m as unknown as [string, string, string];
    if (!KEY_RE.test(key))
      throw new ProviderError(
        "invalid",
        `${name} line ${i + 1}: ${key} is not an OS_* or NESTCLOUD_* setting`,
      );
    let value: string;
    const q = /^'([^']*)'$/.exec(raw) ?? /^"([^"$`\\]*)"$/.exec(raw);
    if (q) value = q[1]!;
    else if (/^[^\s'"$`\\;&|<>()]*$/.test(raw)) value = raw;
    else
      throw new ProviderError(
        "invalid",
        `${name} line ${i + 1}: the value of ${key} is not a plain or quoted string (nothing is evaluated)`,
      );
    out[key] = value;
  });
  return out;
}

/** Settings from env, then the file's variables, then the flags; names the first one missing. */
export function openStackSettings(
  env: Readonly<Record<string, string | undefined>>,
  flags: OpenStackFlags = {},
  file: Readonly<Record<string, string>> = {},
): OpenStackSettings {
  const v = (k: string): string | undefined => file[k] ?? (env[k] === "" ? undefined : env[k]);
  const from = flags.credentials ? `, ${flags.credentials}` : "";
  const need = (k: string, flag?: string): string => {
    const x = v(k);
    if (!x)
      throw new ProviderError(
        "invalid",
        `the openstack provider needs ${k} (source your openrc file${flag ? `, give ${flag}` : ""} or put it in --os-credentials${from})`,
      );
    return x;
  };
  const iface = v("OS_INTERFACE");
  if (iface !== undefined && iface !== "public" && iface !== "internal" && iface !== "admin")
    throw new ProviderError("invalid", `OS_INTERFACE: expected public, internal or admin, got ${iface}`);
  const authUrl = flags.authUrl ?? need("OS_AUTH_URL", "--os-auth-url");
  if (!/^https?:\/\/[^\s]+$/.test(authUrl) || authUrl.length > 2048)
    throw new ProviderError("invalid", `OS_AUTH_URL: expected an http(s) URL, got ${authUrl.slice(0, 80)}`);
  const agentTokenFile = flags.agentTokenFile ?? v("NESTCLOUD_AGENT_TOKEN_FILE");
  const agentNetwork = flags.agentNetwork ?? v("NESTCLOUD_AGENT_NETWORK");
  return {
    authUrl,
    username: need("OS_USERNAME"),
    password: need("OS_PASSWORD"),
    userDomain: v("OS_USER_DOMAIN_NAME") ?? "Default",
    projectName: flags.project ?? need("OS_PROJECT_NAME", "--os-project"),
    projectDomain: v("OS_PROJECT_DOMAIN_NAME") ?? "Default",
    interface: iface,
    region: v("OS_REGION_NAME"),
    imageRef: flags.image ?? need("NESTCLOUD_OPENSTACK_IMAGE", "--os-image"),
    ...(agentTokenFile ? { agentTokenFile } : {}),
    ...(agentNetwork ? { agentNetwork } : {}),
  };
}

/** The rental's options from openrc-style variables alone (the environment). */
export function openStackOptionsFromEnv(env: NodeJS.ProcessEnv): OpenStackRentalOptions {
  return openStackSettings(env);
}
