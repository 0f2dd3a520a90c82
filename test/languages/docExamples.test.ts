// Every program in the documentation (README.md and docs/**/*.md) is checked against the code it
// documents, so that a renamed input fails here rather than in a user's program. Each fenced block
// tagged typescript (ts), python (py), go or yaml (yml) is a complete program:
//   typescript  type-checks (strict) against the library, "pulumi-nixos" mapped to components/index.ts
//   go          compiles, every block a main package of one module, against the generated sdk/go
//   python      byte-compiles, and every class of pulumi_nixos it calls, with every keyword argument
//               (and every key of a dict given for an input type), exists in the generated sdk/python
//   yaml        parses, and every nixos:index:* resource and each of its properties, nested ones
//               too, is an input of sdk/schema.json, the required ones given
// Every resource of sdk/schema.json has a page in docs/resources/ with all four languages, and every
// relative link of the documentation leads to a file (and heading) that exists.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import type * as jsYaml from "js-yaml";
import { REPO_ROOT } from "../engine/engine";
import { goEnv, goModule } from "./sdkEnvironments";

const REPO = REPO_ROOT;
const yaml = require("js-yaml") as typeof jsYaml;
const SDK = path.join(REPO, "sdk");
const LANGUAGES: Record<string, Language> = { typescript: "typescript", ts: "typescript", python: "python", py: "python", go: "go", yaml: "yaml", yml: "yaml" };
type Language = "typescript" | "python" | "go" | "yaml";

interface Example {
    language: Language;
    /** The markdown file, relative to the checkout. */
    file: string;
    /** The line of the opening fence. */
    line: number;
    code: string;
}

/** README.md and every markdown file under docs/. */
function markdownFiles(): string[] {
    const docs = fs.readdirSync(path.join(REPO, "docs"), { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".md")).map((file) => path.join("docs", file)).sort();
    return ["README.md", ...docs];
}

/** The fenced blocks of a markdown file in the checked languages. */
function examplesIn(file: string): Example[] {
    const lines = fs.readFileSync(path.join(REPO, file), "utf8").split("\n");
    const examples: Example[] = [];
    for (let index = 0; index < lines.length; index++) {
        const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[index]);
        if (!open) continue;
        const [, indent, fence, tag] = open;
        let end = index + 1;
        while (end < lines.length && !new RegExp(`^\\s*${fence[0]}{${fence.length},}\\s*$`).test(lines[end])) end++;
        // An unclosed fence turns the rest of the page into code.
        assert.ok(end < lines.length, `${file}:${index + 1}: a code fence that is never closed`);
        const language = LANGUAGES[tag.toLowerCase()];
        if (language) {
            const code = lines.slice(index + 1, end).map((line) => line.startsWith(indent) ? line.slice(indent.length) : line).join("\n") + "\n";
            examples.push({ language, file, line: index + 1, code });
        }
        index = end;
    }
    return examples;
}

/** A name for an example's scratch file or folder that says where it is: docs_resources_system_md_l42. */
const slug = (example: Example) => `${example.file.replace(/[^A-Za-z0-9]+/g, "_")}_L${example.line}`.toLowerCase();
const where = (example: Example) => `${example.file}:${example.line}`;

const EXAMPLES = markdownFiles().flatMap(examplesIn);
const of = (language: Language) => EXAMPLES.filter((example) => example.language === language);

/**
 * A checker's output with each place in a scratch file (slug.ts(3,5), slug/main.go:3:5, slug.py
 * line 3) written as the markdown file and line it comes from.
 */
function located(output: string): string {
    const bySlug = new Map(EXAMPLES.map((example) => [slug(example), example]));
    return output.replace(/([a-z0-9_]+)(?:\.ts\((\d+),\d+\)|\/main\.go:(\d+):\d+|\.py line (\d+))/g, (whole, name: string, ...lines: string[]) => {
        const example = bySlug.get(name);
        const line = Number(lines.slice(0, 3).find((value) => value !== undefined));
        return example ? `${example.file}:${example.line + line}` : whole;
    });
}

interface SchemaProperty { $ref?: string; type?: string; items?: SchemaProperty; additionalProperties?: SchemaProperty }
interface SchemaObject { inputProperties?: Record<string, SchemaProperty>; properties?: Record<string, SchemaProperty>; requiredInputs?: string[]; required?: string[] }
const SCHEMA = JSON.parse(fs.readFileSync(path.join(SDK, "schema.json"), "utf8")) as { resources: Record<string, SchemaObject>; types: Record<string, SchemaObject> };

let scratch: string;

before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-doc-examples-"));
});

after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Runs a command; its output is the assertion's message when it fails. */
function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number | null; output: string } {
    const result = spawnSync(command, args, { ...options, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    if (result.error) throw result.error;
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test("the documentation has programs in every language", () => {
    for (const language of ["typescript", "python", "go", "yaml"] as const) assert.ok(of(language).length > 0, `no ${language} example found`);
});

/** GitHub's anchor of a heading: "## After an interrupted `pulumi up`" → after-an-interrupted-pulumi-up. */
const anchorOf = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");

test("every relative link of the documentation leads to a file, and to a heading of it", () => {
    const problems: string[] = [];
    for (const file of markdownFiles()) {
        const text = fs.readFileSync(path.join(REPO, file), "utf8").replace(/^(`{3,}|~{3,})[^]*?^\1\s*$/gm, "");
        for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
            if (/^[a-z]+:/.test(target)) continue;
            const [linked, anchor] = target.split("#");
            const destination = linked ? path.join(path.dirname(file), linked) : file;
            if (!fs.existsSync(path.join(REPO, destination))) {
                problems.push(`${file}: ${target}: no file ${destination}`);
                continue;
            }
            if (anchor === undefined || !destination.endsWith(".md")) continue;
            const headings = [...fs.readFileSync(path.join(REPO, destination), "utf8").matchAll(/^#{1,6} (.+)$/gm)].map(([, heading]) => anchorOf(heading));
            if (!headings.includes(anchor)) problems.push(`${file}: ${target}: no heading #${anchor} in ${destination}`);
        }
    }
    assert.deepEqual(problems, [], problems.join("\n"));
});

test("every resource of sdk/schema.json has a page in docs/resources with its example in TypeScript, Python, Go and YAML", () => {
    for (const token of Object.keys(SCHEMA.resources)) {
        const name = token.split(":")[2];
        const page = path.join("docs/resources", `${name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase()}.md`);
        assert.ok(fs.existsSync(path.join(REPO, page)), `${token} has no page ${page}`);
        const examples = examplesIn(page);
        const uses: Record<Language, RegExp> = {
            typescript: new RegExp(`\\bnew (?:Nixos)?${name}\\(`),
            python: new RegExp(`\\b(?:nixos|pulumi_nixos)\\.${name}\\(`),
            go: new RegExp(`\\bnixos\\.New${name}\\(`),
            yaml: new RegExp(`^\\s*type:\\s*${token}\\s*$`, "m"),
        };
        for (const [language, pattern] of Object.entries(uses) as [Language, RegExp][]) {
            assert.ok(examples.some((example) => example.language === language && pattern.test(example.code)),
                `${page} has no ${language} example that declares a ${token} (${pattern})`);
        }
    }
});

test("the TypeScript examples type-check against the library", () => {
    const folder = path.join(scratch, "typescript");
    fs.mkdirSync(folder);
    const files = of("typescript").map((example) => {
        const file = path.join(folder, `${slug(example)}.ts`);
        fs.writeFileSync(file, example.code);
        return file;
    });
    const modules = path.join(REPO, "node_modules");
    fs.writeFileSync(path.join(folder, "tsconfig.json"), JSON.stringify({
        compilerOptions: {
            target: "ES2022", module: "commonjs", moduleResolution: "node", lib: ["ES2022"], types: ["node"], typeRoots: [path.join(modules, "@types")],
            strict: true, noImplicitReturns: true, esModuleInterop: true, skipLibCheck: true, noEmit: true,
            paths: { "pulumi-nixos": [path.join(REPO, "components/index.ts")], "*": [path.join(modules, "*"), path.join(modules, "@types/*")] },
        },
        files,
    }, null, 2));
    const { status, output } = run(path.join(modules, ".bin/tsc"), ["-p", folder], { cwd: folder });
    assert.equal(status, 0, `TypeScript examples do not type-check:\n${located(output)}`);
});

test("the Go examples compile against the generated Go SDK", () => {
    const module = path.join(scratch, "go");
    fs.mkdirSync(module);
    fs.writeFileSync(path.join(module, "go.mod"), goModule("docexamples"));
    for (const example of of("go")) {
        assert.match(example.code, /^package main\b/m, `${where(example)}: a Go example is a main package`);
        assert.match(example.code, /^func main\(\)/m, `${where(example)}: a Go example has a main function`);
        fs.mkdirSync(path.join(module, slug(example)));
        fs.writeFileSync(path.join(module, slug(example), "main.go"), example.code);
    }
    const { status, output } = run("go", ["build", "./..."], { cwd: module, env: goEnv() });
    assert.equal(status, 0, `Go examples do not compile:\n${located(output)}`);
});

/**
 * Reads the generated Python SDK with `ast` and checks each example against it; prints one line
 * per problem. Arguments: the package's folder, a folder for byte code, then the examples.
 */
const PYTHON_CHECK = String.raw`
import ast, json, os, py_compile, re, sys

package, cache, examples = sys.argv[1], sys.argv[2], sys.argv[3:]
problems = []

def parse(name):
    with open(os.path.join(package, name + ".py"), encoding="utf-8") as source:
        return ast.parse(source.read())

# What "from pulumi_nixos import *" gives: each star-imported module's __all__, and the submodules.
exported, classes = set(), {}
for node in parse("__init__").body:
    if isinstance(node, ast.ImportFrom) and node.level == 1:
        if node.module and any(alias.name == "*" for alias in node.names):
            module = parse(node.module)
            for statement in module.body:
                if isinstance(statement, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "__all__" for target in statement.targets):
                    exported.update(element.value for element in statement.value.elts)
                if isinstance(statement, ast.ClassDef):
                    classes[statement.name] = statement
        else:
            exported.update(alias.asname or alias.name for alias in node.names)

def parameters(name):
    """Each keyword __init__ of the class takes, its annotation's text and whether it has a default."""
    found = {}
    for function in classes[name].body:
        if not (isinstance(function, ast.FunctionDef) and function.name == "__init__"):
            continue
        arguments = function.args
        positional = arguments.posonlyargs + arguments.args
        defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
        for argument, default in list(zip(positional, defaults)) + list(zip(arguments.kwonlyargs, arguments.kw_defaults)):
            if argument.arg in ("self", "__self__", "__props__", "resource_name"):
                continue
            annotation = ast.unparse(argument.annotation) if argument.annotation else ""
            known = found.get(argument.arg)
            found[argument.arg] = (annotation or (known[0] if known else ""), default is not None and (known is None or known[1]))
    return found

def fields(name):
    """A TypedDict's keys, their annotations' text and whether each is required."""
    return {statement.target.id: (ast.unparse(statement.annotation), not ast.unparse(statement.annotation).startswith("NotRequired["))
            for statement in classes[name].body if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)}

def input_type(annotation):
    match = re.search(r"'(\w+Args)(?:Dict)?'", annotation)
    return match.group(1) if match and match.group(1) + "Dict" in classes else None

def check_value(value, annotation, label, path):
    """A literal given for an input of an input type: a dict's keys must be the TypedDict's."""
    kind = input_type(annotation)
    if kind is None:
        return
    if "Mapping[str" in annotation and isinstance(value, ast.Dict):
        for item in value.values:
            check_value(item, annotation.replace("Mapping[str", "", 1), label, path)
    elif "Sequence[" in annotation and isinstance(value, (ast.List, ast.Tuple)):
        for item in value.elts:
            check_value(item, annotation.replace("Sequence[", "", 1), label, path)
    elif isinstance(value, ast.Dict):
        place = f"{label} line {value.lineno}: {path}"
        known = fields(kind + "Dict")
        keys = [key.value for key in value.keys if isinstance(key, ast.Constant)]
        for key, item in zip(value.keys, value.values):
            if isinstance(key, ast.Constant):
                if key.value not in known:
                    problems.append(f"{place}: {kind}Dict has no key {key.value!r} (it has {', '.join(sorted(known))})")
                else:
                    check_value(item, known[key.value][0], label, f"{path}[{key.value!r}]")
        if None not in value.keys:
            for missing in sorted(key for key, (_, required) in known.items() if required and key not in keys):
                problems.append(f"{place}: {kind}Dict needs {missing!r}")

for example in examples:
    py_compile.compile(example, cfile=os.path.join(cache, os.path.basename(example) + "c"), doraise=True)
    with open(example, encoding="utf-8") as source:
        tree = ast.parse(source.read(), example)
    modules, names = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name for alias in node.names if alias.name == "pulumi_nixos")
        elif isinstance(node, ast.ImportFrom) and node.module == "pulumi_nixos":
            names.update({alias.asname or alias.name: alias.name for alias in node.names})
    for node in ast.walk(tree):
        place = f"{os.path.basename(example)} line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Name) and node.id in ("nixos", "pulumi_nixos") and node.id not in modules:
            problems.append(f"{place}: {node.id} is used but pulumi_nixos is not imported as it")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules and node.attr not in exported:
            problems.append(f"{place}: pulumi_nixos has no {node.attr}")
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        name = (function.attr if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name) and function.value.id in modules
                else names.get(function.id) if isinstance(function, ast.Name) else None)
        if name is None or name not in classes:
            if name is not None and name not in exported:
                problems.append(f"{place}: pulumi_nixos has no {name}")
            continue
        accepted = parameters(name)
        given = [keyword.arg for keyword in node.keywords if keyword.arg is not None]
        for keyword in node.keywords:
            if keyword.arg is None:
                continue
            if keyword.arg not in accepted:
                problems.append(f"{place}: {name}() takes no argument {keyword.arg!r} (it takes {', '.join(sorted(accepted))})")
            else:
                check_value(keyword.value, accepted[keyword.arg][0], os.path.basename(example), f"{name}({keyword.arg}=…)")
        # A resource's required inputs are its Args class's arguments without a default.
        required = parameters(name + "Args") if name + "Args" in classes and "args" in accepted else accepted
        passes_args = "args" in given or len(node.args) > 1 or any(keyword.arg is None for keyword in node.keywords)
        if not passes_args:
            for missing in sorted(argument for argument, (_, optional) in required.items() if not optional and argument not in ("args", "opts") and argument not in given):
                problems.append(f"{place}: {name}() needs {missing!r}")

print("\n".join(problems))
`;

test("the Python examples byte-compile and call the generated Python SDK with arguments it takes", () => {
    const folder = path.join(scratch, "python");
    fs.mkdirSync(path.join(folder, "cache"), { recursive: true });
    fs.writeFileSync(path.join(folder, "check.py"), PYTHON_CHECK);
    const files = of("python").map((example) => {
        const file = path.join(folder, `${slug(example)}.py`);
        fs.writeFileSync(file, example.code);
        return file;
    });
    const { status, output } = run("python3", [path.join(folder, "check.py"), path.join(SDK, "python/pulumi_nixos"), path.join(folder, "cache"), ...files]);
    assert.equal(status, 0, `the Python check failed:\n${located(output)}`);
    assert.equal(output.trim(), "", `Python examples do not match sdk/python:\n${located(output)}`);
});

const isMap = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A value given for a property of the schema: an object of a named type has that type's properties, nested ones too. */
function checkValue(value: unknown, spec: SchemaProperty | undefined, place: string, problems: string[]): void {
    if (spec === undefined) return;
    if (spec.$ref && isMap(value)) {
        const typeName = spec.$ref.replace(/^#\/types\//, "");
        const type = SCHEMA.types[typeName];
        if (!type) return void problems.push(`${place}: the schema has no type ${typeName}`);
        checkObject(value, type.properties ?? {}, type.required ?? [], `${place} (${typeName})`, problems);
    } else if (spec.type === "array" && Array.isArray(value)) {
        value.forEach((item, index) => checkValue(item, spec.items, `${place}[${index}]`, problems));
    } else if (spec.type === "object" && isMap(value)) {
        for (const [key, item] of Object.entries(value)) checkValue(item, spec.additionalProperties, `${place}.${key}`, problems);
    }
}

function checkObject(value: Record<string, unknown>, properties: Record<string, SchemaProperty>, required: string[], place: string, problems: string[]): void {
    for (const [key, item] of Object.entries(value)) {
        if (!(key in properties)) problems.push(`${place}: no input ${key} (inputs: ${Object.keys(properties).sort().join(", ")})`);
        else checkValue(item, properties[key], `${place}.${key}`, problems);
    }
    for (const name of required) if (!(name in value)) problems.push(`${place}: ${name} is required`);
}

test("the YAML examples parse and use the resources and inputs of sdk/schema.json", () => {
    const problems: string[] = [];
    for (const example of of("yaml")) {
        let program: unknown;
        try {
            program = yaml.load(example.code);
        } catch (error) {
            problems.push(`${where(example)}: ${(error as Error).message}`);
            continue;
        }
        if (!isMap(program) || program.runtime !== "yaml" || typeof program.name !== "string" || !isMap(program.resources)) {
            problems.push(`${where(example)}: not a Pulumi YAML program (name, runtime: yaml, resources)`);
            continue;
        }
        for (const [name, resource] of Object.entries(program.resources)) {
            if (!isMap(resource) || typeof resource.type !== "string") {
                problems.push(`${where(example)}: resource ${name} has no type`);
                continue;
            }
            if (!resource.type.startsWith("nixos:")) continue;
            const schema = SCHEMA.resources[resource.type];
            if (!schema) {
                problems.push(`${where(example)}: resource ${name}: sdk/schema.json has no resource ${resource.type}`);
                continue;
            }
            const properties = resource.properties ?? {};
            if (!isMap(properties)) problems.push(`${where(example)}: resource ${name}: properties is not a map`);
            else checkObject(properties, schema.inputProperties ?? {}, schema.requiredInputs ?? [], `${where(example)}: ${name} (${resource.type})`, problems);
        }
    }
    assert.deepEqual(problems, [], `YAML examples do not match sdk/schema.json:\n${problems.join("\n")}`);
});
