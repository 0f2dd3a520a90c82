// Stage 3a, on the host: fetch the paths it lacks from the deploy's binary caches, so that the
// deployer sends only what no cache has. The host asks each cache which of those paths it holds
// and what they refer to; it fetches every cached path whose missing references are cached too,
// trusting the caches' keys for that one command (its own settings stay as they are). The copy
// stage then sends the rest. Scripts are constants; URLs, keys and paths reach them as arguments
// or on standard input.
import { z } from "zod";
import { binaryCacheSchema } from "../schema/inputs";
import { parsePathInfo } from "./transport/nix";
import { RemoteCommandError } from "./transport/ssh";
import { Host } from "./host";

export type BinaryCache = z.output<typeof binaryCacheSchema>;

/** Nix options that add the caches, and trust their keys, for one command on the host. */
export function cacheOptions(caches: readonly BinaryCache[]): string[] {
    if (caches.length === 0) return [];
    return [
        "--option", "extra-substituters", caches.map((cache) => cache.url).join(" "),
        "--option", "extra-trusted-public-keys", caches.map((cache) => cache.publicKey).join(" "),
    ];
}

// For each cache ($@), the path-info of the paths on standard input: a line "cache URL", then one
// line of JSON per batch of paths, in the shape the host's Nix prints (parsePathInfo). A path a
// cache lacks is listed as not valid (or null). Negative
// answers are not taken from Nix's narinfo cache, which would hide paths pushed since.
const LIST_CACHED = `
paths=$(cat)
for url in "$@"; do
  printf 'cache %s\\n' "$url"
  printf '%s\\n' "$paths" | xargs sh -c 'nix --extra-experimental-features nix-command path-info --option narinfo-cache-negative-ttl 0 --json --store "$0" "$@" && echo' "$url" \\
    || { echo "the binary cache $url could not be asked for paths" >&2; exit 1; }
done
`;

// Realises the paths on standard input from the caches the options ($@) name.
const FETCH = `xargs nix-store "$@" --realise >/dev/null`;

/** Which of the host's missing paths each cache holds: path → the cache and its references. */
export function parseCachedPaths(output: string): Map<string, { cache: string; narSize: number; references: string[] }> {
    const cached = new Map<string, { cache: string; narSize: number; references: string[] }>();
    let cache = "";
    for (const line of output.split("\n")) {
        if (line.startsWith("cache ")) cache = line.slice("cache ".length);
        if (!line.startsWith("[") && !line.startsWith("{")) continue;
        for (const info of parsePathInfo(line)) {
            if (!info.valid || cached.has(info.path)) continue;
            cached.set(info.path, { cache, narSize: info.narSize, references: info.references });
        }
    }
    return cached;
}

/**
 * The cached paths the host can fetch: those whose references it has or can fetch as well (a
 * path whose reference only the deployer has must wait for the copy, so the deployer sends it).
 */
export function fetchablePaths(missing: readonly string[], cached: ReadonlyMap<string, { references: string[] }>): Set<string> {
    const missingSet = new Set(missing);
    const fetchable = new Set<string>();
    for (let grew = true; grew;) {
        grew = false;
        for (const [storePath, { references }] of cached) {
            if (fetchable.has(storePath) || !missingSet.has(storePath)) continue;
            if (references.every((reference) => reference === storePath || !missingSet.has(reference) || fetchable.has(reference))) {
                fetchable.add(storePath);
                grew = true;
            }
        }
    }
    return fetchable;
}

export interface FetchResult {
    /** The paths the host fetched from the caches. */
    fetched: string[];
    fetchedBytes: number;
}

/** Lets the host fetch what the caches have of the paths it lacks; the caller copies the rest. */
export async function fetchFromCaches(host: Host, missing: readonly string[], caches: readonly BinaryCache[]): Promise<FetchResult> {
    if (caches.length === 0 || missing.length === 0) return { fetched: [], fetchedBytes: 0 };
    const urls = caches.map((cache) => cache.url);
    const cached = parseCachedPaths(await host.check(`asking the binary caches ${urls.join(", ")} which paths they have`,
        ["sh", "-c", LIST_CACHED, "list-cached", ...urls], { input: `${missing.join("\n")}\n` }));
    const fetched = [...fetchablePaths(missing, cached)];
    if (fetched.length === 0) return { fetched, fetchedBytes: 0 };
    const from = [...new Set(fetched.map((storePath) => cached.get(storePath)!.cache))];
    try {
        await host.check(`fetching ${fetched.length} paths from the binary caches ${from.join(", ")}`, ["sh", "-c", FETCH, "fetch", ...cacheOptions(caches)],
            { input: `${fetched.join("\n")}\n` });
    } catch (error) {
        if (error instanceof RemoteCommandError) {
            throw new Error(`${error.message}\nThe host fetched nothing it runs: its system was not changed (check the caches' URLs and public keys).`);
        }
        throw error;
    }
    return { fetched, fetchedBytes: fetched.reduce((sum, storePath) => sum + cached.get(storePath)!.narSize, 0) };
}
