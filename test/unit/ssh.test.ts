import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { quoteShellArgument, remoteCommandLine } from "../../components/transport/ssh";

const HOSTILE = ["plain", "with space", "it's", "$(touch /tmp/pwned)", "`id`", "a;b", "a && b", "new\nline", "*", "~root", "-rf", "\"quoted\"", "\\", "", "$HOME", "a'b'c"];

test("a quoted argument reaches the remote shell as exactly one word, unchanged", () => {
    for (const argument of HOSTILE) {
        const line = remoteCommandLine(["printf", "%s", argument]);
        assert.equal(execFileSync("sh", ["-c", line], { encoding: "utf8" }), argument, `argument ${JSON.stringify(argument)}`);
    }
});

test("plain words are not quoted, and NUL bytes are refused", () => {
    assert.equal(quoteShellArgument("/nix/store/abc-x"), "/nix/store/abc-x");
    assert.throws(() => quoteShellArgument("a\0b"), /NUL/);
    assert.throws(() => remoteCommandLine([]), /empty/);
});
