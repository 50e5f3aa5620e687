// The typed error taxonomy, mirroring decart_widget/protocol/_errors.py: same kinds, same
// classification of server error text, same "permanent" rule (docs/protocol.md, "Error vocabulary").

import { ERROR_MARKERS } from "./constants";

export class DecartError extends Error {
  /** A stable short name, also the `last_error_kind` traitlet. */
  readonly kind: string = "error";
  /** True when retrying the same request cannot succeed. */
  readonly permanent: boolean = false;
}

export class AuthenticationError extends DecartError {
  override readonly kind = "authentication";
  override readonly permanent = true;
}

export class ModerationError extends DecartError {
  override readonly kind = "moderation";
  override readonly permanent = true;
}

export class InsufficientCredits extends DecartError {
  override readonly kind = "credits";
  override readonly permanent = true;
}

export class ConcurrencyLimit extends DecartError {
  override readonly kind = "concurrency";
  override readonly permanent = true;
}

export class AckTimeout extends DecartError {
  override readonly kind = "ack_timeout";
}

export class ConnectionLost extends DecartError {
  override readonly kind = "connection";
}

export class SessionEnded extends DecartError {
  override readonly kind = "session_ended";
  constructor(
    message: string,
    readonly reason: string = "error",
  ) {
    super(message);
  }
}

export class InvalidInput extends DecartError {
  override readonly kind = "invalid_input";
  override readonly permanent = true;
}

export class ProtocolError extends DecartError {
  override readonly kind = "protocol";
}

/** Front-end only: the kernel that owned the widget restarted, shut down or was replaced. */
export class KernelGone extends DecartError {
  override readonly kind = "kernel";
  override readonly permanent = true;
}

/** Front-end only: the input video could not be had (camera, screen, file). */
export type MediaErrorKind = "camera" | "permission" | "insecure_context";

export class MediaError extends DecartError {
  override readonly permanent = true;
  constructor(
    override readonly kind: MediaErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export const ERROR_CLASSES: Readonly<Record<string, new (message: string) => DecartError>> = {
  error: DecartError,
  authentication: AuthenticationError,
  moderation: ModerationError,
  credits: InsufficientCredits,
  concurrency: ConcurrencyLimit,
  ack_timeout: AckTimeout,
  connection: ConnectionLost,
  session_ended: SessionEnded,
  invalid_input: InvalidInput,
  protocol: ProtocolError,
};

const {
  permanent: PERMANENT_MARKERS,
  model: MODEL_MARKERS,
  credits: CREDIT_MARKERS,
  concurrency: CONCURRENCY_MARKERS,
  moderation: MODERATION_MARKERS,
  origin: ORIGIN_MARKERS,
} = ERROR_MARKERS;

const contains = (text: string, markers: readonly string[]): boolean =>
  markers.some((marker) => text.includes(marker));

/** True when an error text means a retry cannot help (the SDKs' rule, plus ours). */
export function isPermanent(errorText: string): boolean {
  const lowered = errorText.toLowerCase();
  return contains(lowered, [
    ...PERMANENT_MARKERS,
    ...MODEL_MARKERS,
    ...CREDIT_MARKERS,
    ...MODERATION_MARKERS,
  ]);
}

/** Turn a server error string into the matching typed error. */
export function classify(errorText: string): DecartError {
  const lowered = errorText.toLowerCase();
  if (contains(lowered, CREDIT_MARKERS)) return new InsufficientCredits(errorText);
  if (contains(lowered, CONCURRENCY_MARKERS)) return new ConcurrencyLimit(errorText);
  if (contains(lowered, MODERATION_MARKERS)) return new ModerationError(errorText);
  if (contains(lowered, MODEL_MARKERS)) return new InvalidInput(errorText);
  if (contains(lowered, PERMANENT_MARKERS) || contains(lowered, ORIGIN_MARKERS)) {
    return new AuthenticationError(errorText);
  }
  return new DecartError(errorText);
}

/** Rebuild an error from its `kind` (as sent by the kernel, e.g. in `token_error`). */
export function fromKind(kind: string, message: string): DecartError {
  const ErrorClass = ERROR_CLASSES[kind] ?? DecartError;
  return new ErrorClass(message);
}

const MEDIA_KINDS: readonly string[] = ["camera", "permission", "insecure_context"] satisfies MediaErrorKind[];

/** Any thrown value as a DecartError (its own kind if it is one, also when an asset's bundle made
 * it with its own copy of these classes: sources.js, livekit.js). */
export function asError(error: unknown): DecartError {
  if (error instanceof DecartError) return error;
  const kind = (error as { kind?: unknown } | null)?.kind;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && typeof kind === "string") {
    if (kind in ERROR_CLASSES) return fromKind(kind, message);
    if (MEDIA_KINDS.includes(kind)) return new MediaError(kind as MediaErrorKind, message);
  }
  return new DecartError(message);
}

/** The typed error of a server error text if retrying cannot help, else null. */
export function permanentError(errorText: string): DecartError | null {
  const error = classify(errorText);
  return error.permanent || isPermanent(errorText) ? error : null;
}

/** What a generation_ended `reason` means: null for the clean "disconnect", else the error that
 * ends the session; `serverError` is the transient error the server sent before, if any. */
export function endedError(reason: string, serverError: string | null): DecartError | null {
  if (reason === "disconnect") return null;
  if (reason === "insufficient_credits") return new InsufficientCredits("insufficient credits: the generation was stopped");
  if (reason === "moderation_violation") return new ModerationError("the generation was stopped by moderation");
  if (reason === "timeout") return new SessionEnded("the session reached its time limit", "timeout");
  if (serverError) return new SessionEnded(`the server ended the generation: ${serverError}`, reason);
  return new SessionEnded(`the server ended the generation (${reason})`, reason);
}
