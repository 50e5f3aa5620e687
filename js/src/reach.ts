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

/** A URL of a server bound to every interface (0.0.0.0, [::]) with the page's host put in: the
 * signaling URL, and a LiveKit room's (the kernel relay hands the browser the wildcard). */
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

/** A media failure says its cause and the ways out when the page can see it: the service is a
 * loopback URL seen from a remote page, or the kernel gave `remoteHelp` (the `remote_page_help`
 * traitlet: an emulator beside the kernel) and the page comes from another host. A message that
 * already names the ways out (the emulator's own reason) and any other error are left as is. */
export function explainMediaFailure(error: DecartError, realtimeUrl: string, pageHost: string, remoteHelp = ""): DecartError {
  const { message } = error;
  if (!/video could not|peer connection failed/.test(message) || message.includes("DECART_API_KEY")) return error;
  if (loopbackOfAnotherHost(realtimeUrl, pageHost)) return fromKind(error.kind, `${message}. ${REMOTE_KERNEL_HELP}`);
  if (remoteHelp && pageHost !== "" && !isLoopbackHost(pageHost)) return fromKind(error.kind, `${message}. ${remoteHelp}`);
  return error;
}
