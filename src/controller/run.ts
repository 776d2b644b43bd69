/**
 * Assembles a controller from options (`nestcloud up`): store, provider, policy, loops,
 * HTTP server, and the admin token (made once, kept in the data dir with mode 0600).
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import pino, { type Logger } from "pino";
import { createPolicy, type RolloutPolicy, withRollingRejuvenation } from "../planner/index.ts";
import {
  demoWorld,
  type OpenStackFlags,
  OpenStackProvider,
  openStackOptionsFrom,
  type Provider,
  ProviderError,
  SimProvider,
  type StateStore,
  TestbedProvider,
  testbedDir,
} from "../providers/index.ts";
import { buildServer } from "./api/server.ts";
import { createToken, verifyToken } from "./auth.ts";
import { Controller } from "./controller.ts";
import { openStore, redact, type Store } from "./store/connect.ts";

export interface UpOptions {
  readonly provider: "sim" | "testbed" | "openstack";
  /** sqlite:<file>, a file path, or postgres://... (default: <dataDir>/nestcloud.db). */
  readonly db?: string;
  readonly port: number;
  readonly host?: string;
  readonly dataDir: string;
  readonly webDir?: string;
  /** Simulated seconds per wall second (sim provider). */
  readonly speed?: number;
  readonly guests?: number;
  readonly servers?: number;
  /** Planning interval on the provider's clock, s (default 300 sim, 30 testbed). */
  readonly intervalSeconds?: number;
  /** The openstack provider's flags (no secrets: those come from the env or the credentials file). */
  readonly openstack?: OpenStackFlags;
  /** The testbed to run on (testbed provider): its id, or its state folder. */
  readonly testbed?: string;
  /** Where testbed folders live (default: that of `nestcloud testbed up`). */
  readonly testbedRoot?: string;
  /** Parameters of the nestcloud policy (see src/planner/nestcloud.ts), e.g. overloadUtilization. */
  readonly policyParams?: Readonly<Record<string, number>>;
  /**
   * A rolling rejuvenation the rounds carry out beside the policy (planner/rolling-rejuvenation.ts),
   * given the provider's clock at start (a version is installed "now" on that clock).
   */
  readonly rollout?: (providerNow: number) => RolloutPolicy;
  readonly holder?: string;
  readonly log?: Logger;
  /** A provider built by the caller (tests), instead of the named one. */
  readonly providerInstance?: Provider;
}

export interface RunningController {
  readonly url: string;
  readonly adminToken: string;
  /** Made by this start (show it once); false when the data dir's token was kept. */
  readonly adminTokenIsNew: boolean;
  /** Where the admin token is kept (mode 0600). */
  readonly adminTokenFile: string;
  readonly controller: Controller;
  readonly store: Store;
  close(): Promise<void>;
}

/** The sim provider keeps its world in the store, fenced like every other write. */
export function storeBackedState(
  c: { store: Store; leaderEpoch: () => number; isLeader: () => boolean },
  key: string,
): StateStore {
  return {
    async load() {
      return c.store.repos.providerState.load(key);
    },
    async save(json) {
      if (!c.isLeader()) return; // a follower reads the world; only the leader changes it
      await c.store.repos.providerState.save(key, json, c.leaderEpoch());
    },
  };
}

/**
 * A version rollout's installation time as the store first recorded it: a controller that
 * restarts (or a follower that takes over) mid-rollout keeps renewing only the hypervisors
 * started before the version came, not again those it renewed already.
 */
export async function durableRollout(store: Store, p: RolloutPolicy): Promise<RolloutPolicy> {
  if (p.kind !== "version") return p;
  const key = `rollout:version:${p.version}`;
  const saved = await store.repos.providerState.load(key);
  const at = saved ? (JSON.parse(saved) as { installedAt?: unknown }).installedAt : undefined;
  if (typeof at === "number" && Number.isFinite(at)) return { ...p, installedAt: at };
  // Before leadership: a plain first record (two controllers starting together agree to seconds).
  await store.repos.providerState.save(key, JSON.stringify({ installedAt: p.installedAt }), 0);
  return p;
}

export const ADMIN_TOKEN_FILE = "admin-token";

/**
 * The data dir holds the store and the admin token: only its owner may enter it (0700) or
 * read the database files (0600; SQLite gives its -wal and -shm files the database's mode).
 * A folder that exists already is tightened only if it is one of ours (has our files).
 */
export function prepareDataDir(dir: string, sqliteFile: string | undefined): void {
  const ours = ["nestcloud.db", ADMIN_TOKEN_FILE].map((f) => join(dir, f));
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (ours.some((f) => existsSync(f)) || readdirSync(dir).length === 0) chmodSync(dir, 0o700);
  const files = [ours[1]];
  if (sqliteFile && sqliteFile !== ":memory:") {
    mkdirSync(dirname(sqliteFile), { recursive: true, mode: 0o700 });
    // Made 0600 before SQLite opens it: SQLite makes its -wal and -shm with the same mode.
    if (!existsSync(sqliteFile)) closeSync(openSync(sqliteFile, "a", 0o600));
    files.push(sqliteFile, `${sqliteFile}-wal`, `${sqliteFile}-shm`);
  }
  for (const f of files) if (existsSync(f)) chmodSync(f, 0o600);
}

export async function runController(o: UpOptions): Promise<RunningController> {
  const log = o.log ?? pino({ level: process.env.NESTCLOUD_LOG ?? "info" });
  const url = o.db ?? `sqlite:${join(resolve(o.dataDir), "nestcloud.db")}`;
  prepareDataDir(o.dataDir, /^postgres(ql)?:\/\//.test(url) ? undefined : url.replace(/^sqlite:/, ""));
  const store = await openStore(url);
  log.info({ store: redact(url) }, "store open");

  let controller: Controller | undefined;
  const ctl = {
    store,
    leaderEpoch: () => controller?.leader.epoch ?? 0,
    isLeader: () => controller?.leader.isLeader ?? false,
  };
  let provider: Provider;
  if (o.providerInstance) provider = o.providerInstance;
  else if (o.provider === "sim") {
    provider = await SimProvider.open(storeBackedState(ctl, "sim-world"), () =>
      demoWorld({ speed: o.speed ?? 60, guests: o.guests, servers: o.servers }),
    );
  } else if (o.provider === "openstack") {
    const flags = o.openstack ?? {};
    provider = await Promise.resolve()
      .then(() => {
        const opts = openStackOptionsFrom(flags, process.env);
        // Guests' definitions in the store, per project (as the testbed's are per testbed).
        const key = `openstack-guests:${opts.authUrl} ${opts.projectDomain}/${opts.projectName}`;
        return OpenStackProvider.open({
          ...opts,
          ...(opts.agents ? { agents: { ...opts.agents, guestStore: storeBackedState(ctl, key) } } : {}),
          log: (msg) => log.info({ provider: "openstack" }, msg),
        });
      })
      .catch(async (e) => {
        await store.close();
        throw e;
      });
  } else {
    if (!o.testbed) {
      throw new ProviderError(
        "invalid",
        "the testbed provider needs --testbed <id or folder> of a testbed started with `nestcloud testbed up`",
      );
    }
    // Rentals and guest definitions live in the store, per testbed, fenced like the sim world.
    const testbed = o.testbed;
    provider = await TestbedProvider.open({
      testbed,
      root: o.testbedRoot,
      store: storeBackedState(ctl, `testbed:${testbedDir(testbed, o.testbedRoot)}`),
      guestStore: storeBackedState(ctl, `testbed-guests:${testbedDir(testbed, o.testbedRoot)}`),
      log: (msg) => log.info({ provider: "testbed" }, msg),
    }).catch(async (e) => {
      await store.close();
      throw e;
    });
  }

  const policy = createPolicy("nestcloud", o.policyParams ?? {}, {
    acquireType: (await provider.describe()).hostVmTypes[0],
  });
  controller = new Controller({
    store,
    provider,
    policy: o.rollout
      ? withRollingRejuvenation(policy, await durableRollout(store, o.rollout(provider.now())))
      : policy,
    log,
    // Real time on a testbed: a round every 30 s keeps up with load changes you cause by hand.
    intervalSeconds: o.intervalSeconds ?? (provider.name === "testbed" ? 30 : 300),
    holder: o.holder,
  });
  await controller.start();

  // The admin token: made once per data dir (or again if it was revoked or expired).
  const tokenFile = join(o.dataDir, ADMIN_TOKEN_FILE);
  let adminToken = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
  let adminTokenIsNew = false;
  if (!adminToken || (await verifyToken(store, `Bearer ${adminToken}`))?.role !== "admin") {
    adminToken = (await createToken(store, { role: "admin" }, "nestcloud up")).token;
    writeFileSync(tokenFile, `${adminToken}\n`, { mode: 0o600 });
    chmodSync(tokenFile, 0o600);
    adminTokenIsNew = true;
  }

  const app = await buildServer(controller, { webDir: o.webDir, log });
  const address = await app.listen({ port: o.port, host: o.host ?? "127.0.0.1" });
  return {
    url: address,
    adminToken,
    adminTokenIsNew,
    adminTokenFile: resolve(tokenFile),
    controller,
    store,
    async close() {
      await app.close();
      await controller!.stop();
      await provider.close();
      await store.close();
    },
  };
}
