// Pulumi's property values on the wire: a google.protobuf.Struct in which a secret is an object
// marked by a signature key, and a value not known yet (during a preview) is a sentinel string.
// The provider works on plain values and remembers which top-level properties were secret.
import { Struct } from "google-protobuf/google/protobuf/struct_pb";

const SIGNATURE_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270";

/** A value the engine does not know yet (an output of a resource not made in a preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export type PropertyMap = Record<string, unknown>;

export interface Properties {
    values: PropertyMap;
    /** Top-level properties that are, or contain, a secret. */
    secrets: Set<string>;
}

function unwrap(value: unknown, onSecret: () => void): unknown {
    if (Array.isArray(value)) return value.map((item) => unwrap(item, onSecret));
    if (value === null || typeof value !== "object") return value;
    const object = value as Record<string, unknown>;
    const signature = object[SIGNATURE_KEY];
    if (signature === SECRET_SIGNATURE) {
        onSecret();
        return unwrap(object.value, onSecret);
    }
    if (signature !== undefined) throw new Error(`a property of kind ${String(signature)} (asset, archive or resource reference) is not supported`);
    return Object.fromEntries(Object.entries(object).map(([key, item]) => [key, unwrap(item, onSecret)]));
}

export function decodeProperties(struct: Struct | undefined): Properties {
    const secrets = new Set<string>();
    const values: PropertyMap = {};
    for (const [key, value] of Object.entries(struct?.toJavaScript() ?? {})) {
        values[key] = unwrap(value, () => secrets.add(key));
    }
    return { values, secrets };
}

/** Encodes plain values; the named top-level properties become secrets. Undefined values are left out. */
export function encodeProperties(values: PropertyMap, secrets: Iterable<string> = []): Struct {
    const secret = new Set(secrets);
    const wire: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(values)) {
        if (value === undefined) continue;
        wire[key] = secret.has(key) ? { [SIGNATURE_KEY]: SECRET_SIGNATURE, value } : value;
    }
    return Struct.fromJavaScript(wire as Parameters<typeof Struct.fromJavaScript>[0]);
}

/** Whether a value is, or contains, a value not known yet. */
export function containsUnknown(value: unknown): boolean {
    if (value === UNKNOWN) return true;
    if (Array.isArray(value)) return value.some(containsUnknown);
    if (value !== null && typeof value === "object") return Object.values(value).some(containsUnknown);
    return false;
}

/** The value at a path of keys, or undefined. */
export function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
    return path.reduce<unknown>((node, key) => (node !== null && typeof node === "object" ? (node as Record<PropertyKey, unknown>)[key] : undefined), value);
}
