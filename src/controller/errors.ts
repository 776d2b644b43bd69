/** Errors the API turns into HTTP answers; each says what is wrong and with what. */
import type { MoveRefusal, MoveRefusalReason } from "../planner/index.ts";
import { ProviderError } from "../providers/index.ts";

export type ApiStatus = 400 | 401 | 403 | 404 | 409 | 422 | 426 | 429 | 503;

export class ApiError extends Error {
  constructor(
    readonly status: ApiStatus,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, `${what} ${id} not found`);

/**
 * The HTTP status of each provider error, by its kind: what the provider does not know is
 * not found, what it cannot take as given is invalid, what clashes with its state (an id
 * taken, no room) is a conflict, and a provider it cannot reach now is unavailable.
 */
export const PROVIDER_ERROR_STATUS = {
  "not-found": 404,
  invalid: 422,
  conflict: 409,
  exists: 409,
  capacity: 409,
  unavailable: 503,
} as const satisfies Record<ProviderError["code"], ApiStatus>;

/**
 * The HTTP status of each reason the planner refuses a requested move (planner/requested.ts):
 * the cloud's state is in the way (409), or the request itself cannot be met (422).
 */
export const MOVE_REFUSAL_STATUS = {
  "not-placed": 409,
  migrating: 409,
  "same-host-vm": 422,
  "cannot-take": 409,
  "no-room": 409,
  "instant-across-servers": 422,
} as const satisfies Record<MoveRefusalReason, ApiStatus>;

/** A refused move as the API answers it: the field at fault named, as validation does. */
export function moveRefusalError(r: MoveRefusal): ApiError {
  return new ApiError(MOVE_REFUSAL_STATUS[r.reason], r.field ? `body/${r.field}: ${r.message}` : r.message);
}

/** A provider's refusal as the API answers it (the provider's message, its kind's status). */
export function providerApiError(e: ProviderError): ApiError {
  return new ApiError(PROVIDER_ERROR_STATUS[e.code], e.message);
}

/** An error as the API answers it, if it is one the API knows (else undefined: a 500). */
export function asApiError(e: unknown): ApiError | undefined {
  if (e instanceof ApiError) return e;
  if (e instanceof ProviderError) return providerApiError(e);
  return undefined;
}

/** This controller is no longer the leader (another one took over): its write was refused. */
export class FencedError extends Error {
  constructor(mine: number, current: number) {
    super(`leadership lost: this controller has epoch ${mine}, the store says ${current}`);
    this.name = "FencedError";
  }
}
