// A discv5 node of ChainSafe's implementation (@chainsafe/discv5, Lodestar's), for
// discotrace's e2e tests: a second, independent discv5 beside go-ethereum's.
//
// Usage: node discv5-node.mjs IP PORT KEYHEX
// It prints its record as one JSON line ({"enr":..., "node_id":...}), then takes commands
// on stdin, one a line, and answers each with one JSON line of what the node saw:
//   ping ENR       PING the node of ENR          -> {"op":"ping","ok":true,"enr_seq":"1"}
//   findnode ENR   FINDNODE it at distance 256   -> {"op":"findnode","ok":true,"nodes":1}
// A failed request answers {"op":...,"ok":false,"error":"..."}. It stops when stdin closes.
import { createInterface } from "node:readline";
import { Discv5 } from "@chainsafe/discv5";
import { ENR, SignableENR } from "@chainsafe/enr";
import { privateKeyFromRaw } from "@libp2p/crypto/keys";
import { multiaddr } from "@multiformats/multiaddr";

const [ip, port, keyHex] = process.argv.slice(2);
if (!ip || !port || !keyHex) {
  console.error("usage: node discv5-node.mjs IP PORT KEYHEX");
  process.exit(2);
}
const privateKey = privateKeyFromRaw(Buffer.from(keyHex, "hex"));
const enr = SignableENR.createFromPrivateKey(privateKey);
enr.ip = ip;
enr.udp = Number(port);
const discv5 = Discv5.create({
  enr,
  privateKey,
  bindAddrs: { ip4: multiaddr(`/ip4/${ip}/udp/${port}`) },
  // Requests wait as long as go-ethereum's do, so both sides time out alike.
  config: { requestTimeout: 700 },
});
await discv5.start();
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
say({ enr: discv5.enr.toENR().encodeTxt(), node_id: discv5.enr.nodeId });

const commands = {
  async ping(peer) {
    const pong = await discv5.sendPing(peer);
    return { enr_seq: String(pong.enrSeq) };
  },
  async findnode(peer) {
    const nodes = await discv5.sendFindNode(peer, [256]);
    return { nodes: nodes.length };
  },
};

for await (const line of createInterface({ input: process.stdin })) {
  const [op, arg] = line.trim().split(/\s+/);
  if (!commands[op]) {
    say({ op, ok: false, error: "unknown command" });
    continue;
  }
  try {
    say({ op, ok: true, ...(await commands[op](ENR.decodeTxt(arg))) });
  } catch (err) {
    say({ op, ok: false, error: String(err?.message ?? err) });
  }
}
await discv5.stop();
