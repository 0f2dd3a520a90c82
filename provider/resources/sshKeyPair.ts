// nixos:index:SshKeyPair: the key is generated once, when the resource is created, and kept in
// the state as a secret; it changes only when the resource is replaced (a new comment).
import { generateEd25519KeyPair } from "../../deploy/bootstrap/sshKeys";
import { SSH_KEY_PAIR } from "../../schema/resources";
import { ResourceHandler } from "../server";
import { diffProperties, validateInputs } from "./inputs";

export const sshKeyPair: ResourceHandler = {
    definition: SSH_KEY_PAIR,

    async check(_context, news) {
        return validateInputs(SSH_KEY_PAIR, news);
    },

    async diff(_context, olds, news) {
        const detailedDiff = diffProperties(olds, news, ["comment"]);
        return { detailedDiff, replaces: Object.keys(detailedDiff) };
    },

    async create(_context, inputs) {
        const pair = generateEd25519KeyPair(inputs.comment as string);
        return { id: pair.publicKey.split(" ")[1].slice(-16), outputs: { comment: inputs.comment, ...pair } };
    },
};
