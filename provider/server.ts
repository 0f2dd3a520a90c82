// The gRPC ResourceProvider service of pulumi-resource-nixos: decodes each request, hands it to
// the handler of its resource type, and encodes the answer. No deploy logic lives here. The
// protocol is implemented directly (not through @pulumi/pulumi/provider) because only the
// protocol's own DiffResponse can carry a detailed diff.
import * as grpc from "@grpc/grpc-js";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engine from "@pulumi/pulumi/proto/engine_pb";
import * as plugin from "@pulumi/pulumi/proto/plugin_pb";
import * as rpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as proto from "@pulumi/pulumi/proto/provider_pb";
import { decodeProperties, encodeProperties, Properties, PropertyMap } from "./properties";
import { inputOnlyProperties, ResourceDefinition, secretProperties } from "../schema/resources";

/** What every operation gets besides its properties. */
export interface OperationContext {
    urn: string;
    /** The resource's name, for messages. */
    name: string;
    /** Reports progress through Pulumi's log, against this resource. */
    log(message: string): void;
    /** Aborted when the engine cancels the deployment (Ctrl-C). */
    signal: AbortSignal;
}

/**
 * A refused input. The reason starts with the field's name; no property is sent to the engine,
 * which would print the property's value beside it (a secret too).
 */
export interface CheckFailure {
    reason: string;
}

/** Property paths ("closure", "packages.app") that change, and how. */
export type DetailedDiff = Record<string, "add" | "delete" | "update">;

export interface DiffResult {
    detailedDiff: DetailedDiff;
    /** Top-level properties whose change replaces the resource. */
    replaces?: string[];
}

/** One resource type: plain values in, plain values out. Inputs come from check. */
export interface ResourceHandler {
    definition: ResourceDefinition;
    check(context: OperationContext, news: PropertyMap, olds: PropertyMap): Promise<{ inputs: PropertyMap; failures: CheckFailure[] }>;
    diff(context: OperationContext, olds: PropertyMap, news: PropertyMap): Promise<DiffResult>;
    create(context: OperationContext, inputs: PropertyMap): Promise<{ id: string; outputs: PropertyMap }>;
    /** Without it, an update records the new inputs beside the old outputs. */
    update?(context: OperationContext, id: string, olds: PropertyMap, news: PropertyMap): Promise<PropertyMap>;
    /** Refresh: the resource's outputs as they are now. */
    read?(context: OperationContext, id: string, state: PropertyMap): Promise<PropertyMap>;
    /** `pulumi import` (a read by ID alone): the resource's ID, inputs and outputs as found. */
    import?(context: OperationContext, id: string): Promise<{ id: string; inputs: PropertyMap; outputs: PropertyMap }>;
    delete?(context: OperationContext, id: string, state: PropertyMap): Promise<void>;
}

const DIFF_KINDS = {
    add: proto.PropertyDiff.Kind.ADD,
    delete: proto.PropertyDiff.Kind.DELETE,
    update: proto.PropertyDiff.Kind.UPDATE,
};
const REPLACE_KINDS = {
    add: proto.PropertyDiff.Kind.ADD_REPLACE,
    delete: proto.PropertyDiff.Kind.DELETE_REPLACE,
    update: proto.PropertyDiff.Kind.UPDATE_REPLACE,
};

type Call<Request> = grpc.ServerUnaryCall<Request, unknown>;
type Callback<Response> = grpc.sendUnaryData<Response>;

/** Answers a unary call with the work's result, or with its error as the resource's own failure. */
function answer<Request, Response>(work: (request: Request) => Promise<Response>) {
    return (call: Call<Request>, callback: Callback<Response>) => {
        work(call.request).then((response) => callback(null, response), (error: unknown) => {
            const message = error instanceof Error ? error.message : String(error);
            callback({ code: grpc.status.UNKNOWN, details: message, message } as grpc.ServiceError);
        });
    };
}

/** What a provider plugin serves. */
export interface ProviderPackage {
    version: string;
    /** The Pulumi package schema. */
    schema: Record<string, unknown>;
    handlers: ResourceHandler[];
}

export class ProviderServer {
    private readonly handlers: Map<string, ResourceHandler>;
    private readonly cancellation = new AbortController();
    private readonly engine?: enginerpc.EngineClient;

    constructor(private readonly served: ProviderPackage, engineAddress?: string) {
        this.handlers = new Map(served.handlers.map((handler) => [handler.definition.token, handler]));
        if (engineAddress) this.engine = new enginerpc.EngineClient(engineAddress, grpc.credentials.createInsecure());
    }

    /** Serves on a free loopback port and returns it. */
    async listen(): Promise<number> {
        const server = new grpc.Server({ "grpc.max_receive_message_length": 64 * 1024 * 1024 });
        server.addService(rpc.ResourceProviderService, this.service() as grpc.UntypedServiceImplementation);
        return new Promise((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(),
            (error, port) => (error ? reject(error) : resolve(port))));
    }

    private handler(urn: string): ResourceHandler {
        const type = urn.split("::")[2]?.split("$").pop() ?? "";
        const handler = this.handlers.get(type);
        if (!handler) throw new Error(`unknown resource type ${type}`);
        return handler;
    }

    private context(urn: string): OperationContext {
        return {
            urn,
            name: urn.split("::").pop() ?? urn,
            log: (message) => this.log(urn, message),
            signal: this.cancellation.signal,
        };
    }

    private log(urn: string, message: string): void {
        if (!this.engine) return;
        const request = new engine.LogRequest().setSeverity(engine.LogSeverity.INFO).setMessage(message).setUrn(urn);
        this.engine.log(request, () => undefined);
    }

    /** Properties, with the secret properties of the resource type and of its inputs kept secret. */
    private encode(handler: ResourceHandler, values: PropertyMap, inputSecrets: Iterable<string> = []) {
        return encodeProperties(values, [...secretProperties(handler.definition), ...inputSecrets]);
    }

    /** Outputs: the properties without the inputs they do not repeat (secrets the state keeps once, with the inputs). */
    private encodeOutputs(handler: ResourceHandler, values: PropertyMap, inputSecrets: Iterable<string> = []) {
        const inputOnly = new Set(inputOnlyProperties(handler.definition));
        return this.encode(handler, Object.fromEntries(Object.entries(values).filter(([name]) => !inputOnly.has(name))), inputSecrets);
    }

    /**
     * The old state as handlers see it: the outputs, with the inputs they do not repeat taken from
     * the old inputs; its secrets are the outputs' (the inputs taken are secret by definition).
     */
    private oldState(handler: ResourceHandler, outputs: Struct | undefined, inputs: Struct | undefined): Properties {
        const state = decodeProperties(outputs);
        const oldInputs = decodeProperties(inputs).values;
        const inputOnly = inputOnlyProperties(handler.definition).filter((name) => oldInputs[name] !== undefined);
        return { values: { ...state.values, ...Object.fromEntries(inputOnly.map((name) => [name, oldInputs[name]])) }, secrets: state.secrets };
    }

    private service(): Partial<rpc.IResourceProviderServer> {
        // Methods left out (Invoke, Call, Construct, Attach, …) answer UNIMPLEMENTED.
        return {
            getPluginInfo: answer(async () => new plugin.PluginInfo().setVersion(this.served.version)),
            getSchema: answer(async () => new proto.GetSchemaResponse().setSchema(JSON.stringify(this.served.schema))),
            checkConfig: answer(async (request: proto.CheckRequest) => new proto.CheckResponse().setInputs(request.getNews())),
            diffConfig: answer(async () => new proto.DiffResponse().setChanges(proto.DiffResponse.DiffChanges.DIFF_NONE)),
            configure: answer(async () => new proto.ConfigureResponse()
                .setAcceptsecrets(true).setSupportspreview(false).setAcceptresources(false).setAcceptoutputs(false)),
            cancel: answer(async () => {
                this.cancellation.abort();
                return new Empty();
            }),
            check: answer(async (request: proto.CheckRequest) => {
                const handler = this.handler(request.getUrn());
                const news = decodeProperties(request.getNews());
                const result = await handler.check(this.context(request.getUrn()), news.values, decodeProperties(request.getOlds()).values);
                const failures = result.failures.map((failure) => new proto.CheckFailure().setReason(failure.reason));
                return new proto.CheckResponse().setInputs(this.encode(handler, result.inputs, news.secrets)).setFailuresList(failures);
            }),
            diff: answer(async (request: proto.DiffRequest) => {
                const handler = this.handler(request.getUrn());
                const olds = this.oldState(handler, request.getOlds(), request.getOldInputs()).values;
                const news = decodeProperties(request.getNews()).values;
                const ignored = new Set(request.getIgnorechangesList());
                const result = await handler.diff(this.context(request.getUrn()), olds, news);
                const changes = Object.entries(result.detailedDiff).filter(([path]) => !ignored.has(path.split(".")[0]));
                const replaces = (result.replaces ?? []).filter((key) => !ignored.has(key));
                const response = new proto.DiffResponse()
                    .setChanges(changes.length ? proto.DiffResponse.DiffChanges.DIFF_SOME : proto.DiffResponse.DiffChanges.DIFF_NONE)
                    .setDiffsList([...new Set(changes.map(([path]) => path.split(".")[0]))])
                    .setReplacesList(replaces)
                    .setHasdetaileddiff(true);
                const detailed = response.getDetaileddiffMap();
                for (const [path, kind] of changes) {
                    const replacing = replaces.includes(path.split(".")[0]);
                    detailed.set(path, new proto.PropertyDiff().setKind((replacing ? REPLACE_KINDS : DIFF_KINDS)[kind]).setInputdiff(true));
                }
                return response;
            }),
            create: answer(async (request: proto.CreateRequest) => {
                const handler = this.handler(request.getUrn());
                const inputs = decodeProperties(request.getProperties());
                const { id, outputs } = await handler.create(this.context(request.getUrn()), inputs.values);
                return new proto.CreateResponse().setId(id).setProperties(this.encodeOutputs(handler, outputs, inputs.secrets));
            }),
            update: answer(async (request: proto.UpdateRequest) => {
                const handler = this.handler(request.getUrn());
                const news = decodeProperties(request.getNews());
                const olds = this.oldState(handler, request.getOlds(), request.getOldInputs()).values;
                const outputs = handler.update ? await handler.update(this.context(request.getUrn()), request.getId(), olds, news.values) : { ...olds, ...news.values };
                return new proto.UpdateResponse().setProperties(this.encodeOutputs(handler, outputs, news.secrets));
            }),
            read: answer(async (request: proto.ReadRequest) => {
                const handler = this.handler(request.getUrn());
                const state = this.oldState(handler, request.getProperties(), request.getInputs());
                if (Object.keys(state.values).length === 0 && handler.import) {
                    const found = await handler.import(this.context(request.getUrn()), request.getId());
                    return new proto.ReadResponse().setId(found.id)
                        .setProperties(this.encodeOutputs(handler, found.outputs, []))
                        .setInputs(this.encode(handler, found.inputs, []));
                }
                const outputs = handler.read ? await handler.read(this.context(request.getUrn()), request.getId(), state.values) : state.values;
                return new proto.ReadResponse().setId(request.getId())
                    .setProperties(this.encodeOutputs(handler, outputs, state.secrets))
                    .setInputs(request.getInputs());
            }),
            delete: answer(async (request: proto.DeleteRequest) => {
                const handler = this.handler(request.getUrn());
                await handler.delete?.(this.context(request.getUrn()), request.getId(), this.oldState(handler, request.getProperties(), request.getOldInputs()).values);
                return new Empty();
            }),
        };
    }
}
