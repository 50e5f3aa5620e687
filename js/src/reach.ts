// Can the browser reach what the kernel handed it? A kernel on another host (a remote server, a
// hub) that runs the local emulator hands out ws://127.0.0.1:<port>: loopback for the kernel, but
// the browser's own loopback. docs/where-it-works.md lists the setups and the ways out.

import { ConnectionLost, type DecartError, fromKind } from "./errors";

/** What the user can do when the browser cannot reach a local emulator next to a remote kernel. */
export const REMOTE_KERNEL_HELP =
  'The browser cannot reach the local emulator next to a remote kernel: set DECART_API_KEY, run Jupyter locally, use signaling="kernel" or give ice_servers.';

/** The page's host name as the browser sees it ("" without a page, as in tests). */
export const currentPageHost = (): string => globalThis.location?.hostname ?? "";

/** localhost, 127.x.x.x, ::1. */
export const isLoopbackHost = (host: string): boolean => /^(localhost|127(\.\d+){3}|\[?::1\]?)$/i.test(host);

/** The loopback `host:port` of `url` when the page comes from another host (the browser's
 * loopback is not the kernel's), else null. */
export function loopbackOfAnotherHost(url: string, pageHost: string): string | null {
  try {
    const { hostname, host } = new URL(url);
    return isLoopbackHost(hostname) && pageHost !== "" && !isLoopbackHost(pageHost) ? host : null;
  } catch {
    return null;
  }
}

/** A URL of a server bound to every interface (0.0.0.0, [::]) with the page's host put in. */
export function fillWildcardHost(url: string, pageHost: string): string {
  const match = /^(wss?:\/\/)(0\.0\.0\.0|\[::\])(?=[:/]|$)/.exec(url);
  if (!match) return url;
  const host = pageHost === "" ? "127.0.0.1" : pageHost.includes(":") ? `[${pageHost}]` : pageHost;
  return match[1] + host + url.slice(match[0].length);
}

/** The error for a signaling URL the browser cannot reach (its credential never quoted), or null. */
export function unreachableSignaling(url: string, pageHost: string): ConnectionLost | null {
  const host = loopbackOfAnotherHost(url, pageHost);
  return host === null ? null : new ConnectionLost(`The page is on ${pageHost}; the kernel gave ${host}. ${REMOTE_KERNEL_HELP}`);
}

/** A media failure while the service is a loopback URL seen from a remote page says its cause and
 * the ways out; any other error is returned as it is. */
export function explainMediaFailure(error: DecartError, realtimeUrl: string, pageHost: string): DecartError {
  const { message } = error;
  if (!/video could not|peer connection failed/.test(message) || message.includes(REMOTE_KERNEL_HELP)) return error;
  return loopbackOfAnotherHost(realtimeUrl, pageHost) ? fromKind(error.kind, `${message}. ${REMOTE_KERNEL_HELP}`) : error;
}
