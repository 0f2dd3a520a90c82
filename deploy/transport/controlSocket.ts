// Ends an OpenSSH master connection through its control socket, in this process: the
// multiplexing protocol's MUX_C_TERMINATE (PROTOCOL.mux in OpenSSH's sources), which is what
// `ssh -O exit` sends. Starting ssh for it costs a process per host at every deploy's end.
import * as net from "node:net";

const MUX_MSG_HELLO = 0x00000001;
const MUX_C_TERMINATE = 0x10000005;
const MUX_S_OK = 0x80000001;
const MUX_S_PERMISSION_DENIED = 0x80000002;
const MUX_PROTOCOL_VERSION = 4;
const TERMINATE_REQUEST_ID = 1;

/** One mux packet: its length, then its type and body as SSH uint32s. */
function packet(...words: number[]): Buffer {
    const buffer = Buffer.alloc(4 + 4 * words.length);
    buffer.writeUInt32BE(4 * words.length, 0);
    words.forEach((word, i) => buffer.writeUInt32BE(word, 4 + 4 * i));
    return buffer;
}

/**
 * Asks the master listening on `socketPath` to exit, and resolves once it has agreed. Rejects when
 * no master answers, or it refuses, within `timeoutMs`.
 */
export function terminateMaster(socketPath: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
        const socket = net.createConnection({ path: socketPath });
        let received = Buffer.alloc(0);
        let helloSeen = false;
        const finish = (error?: Error) => {
            clearTimeout(timer);
            socket.destroy();
            if (error) reject(error); else resolve();
        };
        const timer = setTimeout(() => finish(new Error(`the ssh master did not answer within ${timeoutMs} ms`)), timeoutMs);
        socket.on("connect", () => socket.write(Buffer.concat([packet(MUX_MSG_HELLO, MUX_PROTOCOL_VERSION), packet(MUX_C_TERMINATE, TERMINATE_REQUEST_ID)])));
        socket.on("data", (chunk) => {
            received = Buffer.concat([received, chunk]);
            while (received.length >= 8 && received.length >= 4 + received.readUInt32BE(0)) {
                const length = received.readUInt32BE(0);
                const type = received.readUInt32BE(4);
                received = received.subarray(4 + length);
                if (!helloSeen) {
                    if (type !== MUX_MSG_HELLO) return finish(new Error(`the ssh master's first message is ${type.toString(16)}, not a hello`));
                    helloSeen = true;
                } else if (type === MUX_S_OK) {
                    return finish();
                } else {
                    return finish(new Error(type === MUX_S_PERMISSION_DENIED ? "the ssh master refused to exit" : `the ssh master answered ${type.toString(16)}`));
                }
            }
        });
        socket.on("error", finish);
        socket.on("close", () => finish(new Error("the ssh master closed the control socket without answering")));
    });
}
