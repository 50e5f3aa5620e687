// Can the browser reach what the kernel handed it? A kernel on another host (a remote server, a
// hub) that runs the local emulator hands out ws://127.0.0.1:<port>: loopback for the kernel, but
// the browser's own loopback. docs/where-it-works.md lists the setups and the ways out.

// The cause and the ways out come from the kernel (the `remote_page_help` traitlet,
// decart_widget/widget/_reach.py): it knows the service and the mode; the page knows its own host.

import { ConnectionLost, type DecartError, fromKind } from "./errors";

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

/** Whether the page comes from another host than the kernel's loopback ("" : cannot tell). */
const remotePage = (pageHost: string): boolean => pageHost !== "" && !isLoopbackHost(pageHost);

/** The error for a signaling URL the browser cannot reach (its credential never quoted), or null. */
export function unreachableSignaling(url: string, pageHost: string, help = ""): ConnectionLost | null {
  const host = loopbackOfAnotherHost(url, pageHost);
  return host === null ? null : new ConnectionLost(`The page is on ${pageHost}; the kernel gave ${host}. ${help}`.trim());
}

/** The error that ends a session whose socket to `url` could not be made at all, or null: an
 * emulator on every interface (a `raw` wildcard URL the page filled with its own host), seen from
 * another host, cannot come into reach by retrying. */
export function neverReachable(raw: string, url: string, pageHost: string, help: string): ConnectionLost | null {
  return help && raw !== url && remotePage(pageHost) ? new ConnectionLost(`Could not connect to ${new URL(url).host}. ${help}`) : null;
}

/** A media failure of a service beside the kernel says the cause and the ways out (`help`, the
 * kernel's text for such a service, which says when it applies: a page from another host, an
 * SSH tunnel). A page on localhost cannot tell whether it is tunnelled: it says so too, and for
 * a socket to the service that never opened (from another host that one ends at once instead:
 * `neverReachable`). A message that already names them (the emulator's own reason) and any other
 * error are left as they are. */
export function explainMediaFailure(error: DecartError, pageHost: string, help: string): DecartError {
  const { message } = error;
  const explained = /video could not|peer connection failed/.test(message) || (!remotePage(pageHost) && message.startsWith("could not connect after"));
  return help && pageHost && explained && !message.includes("DECART_API_KEY") ? fromKind(error.kind, `${message}. ${help}`) : error;
}
