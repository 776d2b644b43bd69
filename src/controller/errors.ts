/** Errors the API turns into HTTP answers; each says what is wrong and with what. */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 422 | 429 | 503,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, `${what} ${id} not found`);

/** This controller is no longer the leader (another one took over): its write was refused. */
export class FencedError extends Error {
  constructor(mine: number, current: number) {
    super(`leadership lost: this controller has epoch ${mine}, the store says ${current}`);
    this.name = "FencedError";
  }
}
