// Files from Pulumi secrets, written on the host (keys, passwords, tokens): never through the Nix
// store, never in an argument list, and rolled back with the system.
//
// Content travels on the SSH session's standard input, never in argv: the write command names each
// file's path, owner, group, mode and size, and reads exactly that many bytes per file (`head -c`).
// Each file is written into a temporary file made in its own folder (mktemp: 0600, root), given its
// owner, group and mode before any content is written, then renamed over the old one (atomic).
// Every existing folder on the way must be a real folder owned by root and writable by root alone
// (no symbolic link, nothing another user could swap in between the check and the rename).
//
// Before a file is replaced or removed, its old version is copied into a backup folder (0700, root)
// and an index line says where it came from; a file that did not exist is noted as absent. The
// backups live in the activation agent's folder, so the agent that rolls the system back restores
// them too (before the old system's switch, so its services start with their old keys), also when
// it rolls back on its own; a confirmed activation deletes them.
//
// State keeps a digest per file, never the content: HMAC-SHA256 over the path, owner, group, mode
// and the content's SHA-256, keyed by 32 random bytes made when the resource is created and kept
// (as a secret) in its state. A plain hash would let anyone holding the digest test guesses of a
// low-entropy secret (a short password) offline; with a random key they cannot, and the same
// password in two stacks gives unrelated digests. The key is the resource's own rather than derived
// from the deployer's SSH key, so rotating that key does not change every digest (which would
// re-send every file), and one secret is not used for two purposes. The host only ever reports a
// SHA-256 of what it holds (over the encrypted SSH channel, into the deployer's memory); the digest
// is computed on the deployer, so the key never leaves it.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { HostFileSetting, hostFilesSchema } from "../schema/inputs";
import { Host } from "./host";

/** A file as it should be on the host. */
export interface HostFile {
    path: string;
    content: Buffer;
    owner: string;
    group: string;
    /** Permission bits, e.g. 0o400. */
    mode: number;
    /** Written before the new system activates, or after its switch (before the health checks). */
    activation: "before" | "after";
}

/** What the host holds at a path (its content only as a SHA-256, hex). */
export interface HostFileState {
    owner: string;
    group: string;
    mode: number;
    sha256: string;
}

export function hostFile(setting: HostFileSetting): HostFile {
    return {
        path: setting.path,
        content: Buffer.from(setting.content, setting.encoding === "base64" ? "base64" : "utf8"),
        owner: setting.owner,
        group: setting.group,
        mode: setting.mode,
        activation: setting.activation,
    };
}

/** A new digest key: 32 random bytes, hex. Kept secret in the resource's state. */
export function newDigestKey(): string {
    return randomBytes(32).toString("hex");
}

/** The digest of a file's owner, group, mode and content (as its SHA-256) under the resource's key. */
export function fileDigest(key: string, path: string, state: HostFileState): string {
    const fields = ["pulumi-nixos file v1", path, state.owner, state.group, state.mode.toString(8).padStart(4, "0"), state.sha256];
    return createHmac("sha256", Buffer.from(key, "hex")).update(fields.join("\0")).digest("hex");
}

function stateOf(file: HostFile): HostFileState {
    return { owner: file.owner, group: file.group, mode: file.mode, sha256: createHash("sha256").update(file.content).digest("hex") };
}

/** Path → digest of the files as they should be. */
export function desiredDigests(key: string, files: readonly HostFile[]): Record<string, string> {
    return Object.fromEntries(files.map((file) => [file.path, fileDigest(key, file.path, stateOf(file))]));
}

/** Path → digest of what the host holds (paths it lacks are left out). */
export function observedDigests(key: string, observed: Record<string, HostFileState | undefined>): Record<string, string> {
    return Object.fromEntries(Object.entries(observed).filter((entry): entry is [string, HostFileState] => entry[1] !== undefined)
        .map(([path, state]) => [path, fileDigest(key, path, state)]));
}

/** What a resource's state records of its files: the digest key and a digest per path. */
export interface RecordedFiles {
    fileDigestKey?: string;
    fileDigests?: Record<string, string>;
}

/**
 * Which files the new `files` input changes against the state, by path (for a preview: no host
 * needed); undefined when the input cannot be read yet (a content not known in a preview).
 */
export function diffFiles(recorded: RecordedFiles, files: unknown): FileChanges | undefined {
    const parsed = hostFilesSchema.safeParse(files);
    if (!parsed.success) return undefined;
    return changedFiles(recorded.fileDigests ?? {}, desiredDigests(recorded.fileDigestKey ?? newDigestKey(), parsed.data.map(hostFile)));
}

/** What the state records after `files` were written: the key kept (or a new one) and their digests; without files, nothing. */
export function recordFiles(recorded: RecordedFiles, files: readonly HostFile[]): RecordedFiles {
    if (files.length === 0) return {};
    const fileDigestKey = recorded.fileDigestKey ?? newDigestKey();
    return { fileDigestKey, fileDigests: desiredDigests(fileDigestKey, files) };
}

/** Which files change, by path only: written (new or different) and removed. */
export interface FileChanges {
    write: string[];
    remove: string[];
}

/** Compares recorded digests (the state) with the wanted ones: what a preview shows, no host needed. */
export function changedFiles(recorded: Record<string, string>, wanted: Record<string, string>): FileChanges {
    return {
        write: Object.keys(wanted).filter((path) => recorded[path] !== wanted[path]).sort(),
        remove: Object.keys(recorded).filter((path) => !(path in wanted)).sort(),
    };
}

export function hasFileChanges(changes: FileChanges): boolean {
    return changes.write.length > 0 || changes.remove.length > 0;
}

/** The changes for a preview's message: paths only. */
export function describeChanges(changes: FileChanges | undefined): string {
    return changes ? [...changes.write, ...changes.remove.map((path) => `${path} (removed)`)].join(", ") : "not known until their contents are";
}

/** The writes and removals that bring the host from what it holds to what is wanted. */
export interface FilePlan {
    write: HostFile[];
    remove: string[];
}

/**
 * Plans against what the host holds now (not the state, which may be stale): a file that already
 * matches is not sent again; `previouslyManaged` paths that are no longer wanted are removed.
 */
export function planFiles(wanted: readonly HostFile[], onHost: Record<string, HostFileState | undefined>, previouslyManaged: readonly string[]): FilePlan {
    const matches = (file: HostFile) => {
        const held = onHost[file.path];
        const wantedState = stateOf(file);
        return held !== undefined && held.owner === wantedState.owner && held.group === wantedState.group &&
            held.mode === wantedState.mode && held.sha256 === wantedState.sha256;
    };
    const wantedPaths = new Set(wanted.map((file) => file.path));
    return {
        write: wanted.filter((file) => !matches(file)),
        remove: previouslyManaged.filter((path) => !wantedPaths.has(path) && onHost[path] !== undefined).sort(),
    };
}

// Prints "file PATH OWNER GROUP MODE SHA256" for each argument that is a regular file, and
// "other PATH" for anything else there (a link, a folder).
const PROBE_FILES = `
for p in "$@"; do
  if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo "other $p"
  elif [ -f "$p" ]; then
    sum=$(sha256sum < "$p") || exit 1
    printf 'file %s %s %s\\n' "$p" "$(stat -c '%U %G %a' "$p")" "\${sum%% *}"
  fi
done
`;

/** What the host holds at each path: a regular file's owner, group, mode and SHA-256. */
export async function probeFiles(host: Host, paths: readonly string[]): Promise<Record<string, HostFileState | undefined>> {
    const found: Record<string, HostFileState | undefined> = Object.fromEntries(paths.map((path) => [path, undefined]));
    if (paths.length === 0) return found;
    const output = await host.check("reading the files on the host", ["sh", "-c", PROBE_FILES, "probe-files", ...paths], { privileged: true, timeoutMs: 120_000 });
    for (const line of output.split("\n")) {
        const [kind, path, owner, group, mode, sha256] = line.split(" ");
        if (kind === "other") found[path] = { owner: "", group: "", mode: 0, sha256: "not a regular file" };
        if (kind === "file" && sha256) found[path] = { owner, group, mode: parseInt(mode, 8), sha256 };
    }
    return found;
}

/**
 * A shell function that puts back what a backup folder ($1) holds: each saved file is copied into
 * a temporary file beside its path (same mount: /run/keys may be a file system of its own) and
 * renamed over it; a file that was absent is removed. Then the folder is deleted. Shared by the
 * agent's rollback and the deployer's own restore.
 */
export const RESTORE_FILES = `
restore_files() {
  [ -f "$1/index" ] || { rm -rf "$1"; return 0; }
  while read -r kind n p; do
    case "$kind" in
      saved) cp -p "$1/$n" "\${p%/*}/.pulumi-nixos-restore.$n" && mv -f "\${p%/*}/.pulumi-nixos-restore.$n" "$p" ;;
      absent) rm -f "$p" ;;
    esac
  done < "$1/index"
  rm -rf "$1"
}
`;

// Writes and removes files, reading the contents from standard input in order. $1 the backup
// folder, $2 the agent's folder when the agent already runs (files after the switch) or empty,
// then per file: "write" PATH OWNER GROUP MODE SIZE, or "remove" PATH - - - -.
//
// With a running agent, the writer holds "writing" (mkdir is atomic) and goes on only while the
// agent's "pending" still exists; an agent that claims "pending" waits for "writing" to go before
// it restores. So every file written is in the index before the agent reads it, or not written.
const WRITE_FILES = `
set -u
umask 022
backup="$1"; agent="$2"; shift 2
fail() { echo "$*" >&2; exit 1; }
check_folders() {
  d="\${1%/*}"; [ -n "$d" ] || d=/
  while :; do
    if [ -L "$d" ]; then fail "$d is a symbolic link: refusing to write $1 through it"
    elif [ -e "$d" ]; then
      [ -d "$d" ] || fail "$d is not a folder"
      set -- "$1" $(stat -c '%u %a' "$d")
      [ "$2" = 0 ] || fail "$d is not owned by root: refusing to write $1 in it"
      [ $((0$3 & 022)) = 0 ] || fail "$d can be written by users other than root: refusing to write $1 in it"
    fi
    [ "$d" = / ] && return 0
    d="\${d%/*}"; [ -n "$d" ] || d=/
  done
}
save() {
  while read -r kind n p; do [ "$p" = "$1" ] && return 0; done < "$backup/index"
  n=$(wc -l < "$backup/index")
  if [ -e "$1" ]; then
    cp -p "$1" "$backup/$n" || fail "could not keep the previous version of $1"
    echo "saved $n $1" >> "$backup/index"
  else
    echo "absent $n $1" >> "$backup/index"
  fi
}
mkdir -p "$backup" && chmod 700 "$backup" && touch "$backup/index" || fail "could not make the backup folder $backup"
if [ -n "$agent" ]; then
  mkdir "$agent/writing" || fail "another writer holds $agent/writing"
  trap 'rmdir "$agent/writing"' EXIT
  [ -e "$agent/pending" ] || fail "the activation is no longer pending (the host's confirm timeout ran out): not writing"
fi
while [ $# -ge 6 ]; do
  op="$1"; path="$2"; owner="$3"; group="$4"; mode="$5"; size="$6"; shift 6
  check_folders "$path"
  if [ -L "$path" ] || { [ -e "$path" ] && [ ! -f "$path" ]; }; then fail "$path exists and is not a regular file"; fi
  save "$path"
  if [ "$op" = remove ]; then rm -f "$path" || fail "could not remove $path"; continue; fi
  dir="\${path%/*}"; [ -n "$dir" ] || dir=/
  mkdir -p "$dir" && check_folders "$path"
  tmp=$(mktemp "$dir/.pulumi-nixos.XXXXXX") || fail "could not make a temporary file beside $path"
  chown "$owner:$group" "$tmp" || { rm -f "$tmp"; fail "could not give $path to $owner:$group (does the user or group exist? for one the new system makes, write the file after activation)"; }
  # The owner must be able to open it: on NixOS /run/keys is 0750 root:keys.
  if [ "$owner" != root ] && command -v setpriv > /dev/null && ! setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups test -x "$dir" 2> /dev/null; then
    rm -f "$tmp"
    fail "$owner could not open $path: a folder on the way to it is closed to $owner (on NixOS /run/keys is 0750 root:keys: add $owner to group keys, users.users.$owner.extraGroups = [ \"keys\" ], or write the file elsewhere)"
  fi
  chmod "$mode" "$tmp" && head -c "$size" > "$tmp" && [ "$(wc -c < "$tmp")" = "$size" ] || { rm -f "$tmp"; fail "could not write $path"; }
  mv -f "$tmp" "$path" || { rm -f "$tmp"; fail "could not put $path in place"; }
done
`;

/** Where a deploy keeps the previous versions of the files it changes. */
export interface FileBackup {
    /** The backup folder on the host (root-only). */
    folder: string;
    /** The running agent's folder, for files written after the switch; undefined before it starts. */
    agentFolder?: string;
}

/** Writes and removes files on the host, keeping the previous versions in the backup folder. */
export async function writeFiles(host: Host, plan: FilePlan, backup: FileBackup): Promise<void> {
    if (plan.write.length === 0 && plan.remove.length === 0) return;
    const operations = [
        ...plan.remove.map((path) => ["remove", path, "-", "-", "-", "-"]),
        ...plan.write.map((file) => ["write", file.path, file.owner, file.group, file.mode.toString(8).padStart(4, "0"), String(file.content.length)]),
    ].flat();
    await host.check("writing files", ["sh", "-c", WRITE_FILES, "write-files", backup.folder, backup.agentFolder ?? "", ...operations],
        { privileged: true, input: Buffer.concat(plan.write.map((file) => file.content)), secretInput: plan.write.length > 0, timeoutMs: 120_000 });
}

/** Puts back the files a backup folder holds (a deploy that failed before its agent could). */
export async function restoreFiles(host: Host, folder: string): Promise<void> {
    await host.check("restoring the previous files", ["sh", "-c", `${RESTORE_FILES}\nrestore_files "$1"`, "restore-files", folder],
        { privileged: true, fresh: true, timeoutMs: 60_000 });
}

/** Deletes a backup folder once the new files are there to stay. */
export async function dropBackup(host: Host, folder: string): Promise<void> {
    await host.check("removing the previous files", ["rm", "-rf", "--", folder], { privileged: true, timeoutMs: 60_000 });
}

/** A summary for the deploy's log: paths only, never content. */
export function describePlan(plan: FilePlan): string {
    return [
        ...plan.write.map((file) => `${file.path} (${file.owner}:${file.group} ${file.mode.toString(8).padStart(4, "0")}, ${file.activation} activation)`),
        ...plan.remove.map((path) => `${path} (removed)`),
    ].join(", ");
}
