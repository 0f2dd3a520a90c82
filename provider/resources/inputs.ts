// What every resource's check and diff share: validating the inputs against the schema's zod
// schemas, and comparing properties for a detailed diff.
import { containsUnknown, PropertyMap, valueAt } from "../properties";
import { inputSchemas, ResourceDefinition } from "../../schema/resources";
import { CheckFailure, DetailedDiff } from "../server";

/**
 * Validates each input with its schema and applies the defaults. Failures name the field and say
 * what is wrong, never the value. A value not known yet (in a preview) is kept as it is and
 * checked when it is known; properties the schema does not declare are dropped.
 */
export function validateInputs(resource: ResourceDefinition, news: PropertyMap): { inputs: PropertyMap; failures: CheckFailure[] } {
    const inputs: PropertyMap = {};
    const failures: CheckFailure[] = [];
    for (const [name, schema] of Object.entries(inputSchemas(resource))) {
        const value = news[name];
        const result = schema.safeParse(value);
        if (result.success) {
            if (result.data !== undefined) inputs[name] = result.data;
            continue;
        }
        inputs[name] = value;
        for (const issue of result.error.issues) {
            if (containsUnknown(valueAt(value, issue.path))) continue;
            failures.push({ reason: `${[name, ...issue.path].join(".")}: ${issue.message}` });
        }
    }
    return { inputs, failures };
}

/**
 * The properties with each input the state lacks given its default: a state written before an
 * input existed means what the default means, so a new input's default is no change.
 */
export function withDefaults(resource: ResourceDefinition, state: PropertyMap): PropertyMap {
    const filled: PropertyMap = { ...state };
    for (const [name, schema] of Object.entries(inputSchemas(resource))) {
        if (filled[name] !== undefined) continue;
        const fallback = schema.safeParse(undefined);
        if (fallback.success && fallback.data !== undefined) filled[name] = fallback.data;
    }
    return filled;
}

/** JSON with object keys sorted: the engine does not keep the order of a map's keys. */
function canonical(value: unknown): string {
    return JSON.stringify(value, (_key, node) => (node !== null && typeof node === "object" && !Array.isArray(node)
        ? Object.fromEntries(Object.entries(node).sort(([a], [b]) => a.localeCompare(b)))
        : node));
}

/** How the named properties differ between the old state and the new inputs. */
export function diffProperties(olds: PropertyMap, news: PropertyMap, names: readonly string[]): DetailedDiff {
    const diff: DetailedDiff = {};
    for (const name of names) {
        const [before, after] = [olds[name], news[name]];
        if (before === undefined && after === undefined) continue;
        if (before === undefined) diff[name] = "add";
        else if (after === undefined) diff[name] = "delete";
        else if (canonical(before) !== canonical(after)) diff[name] = "update";
    }
    return diff;
}
