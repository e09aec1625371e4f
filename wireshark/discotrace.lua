-- discotrace.lua: a Wireshark dissector for Ethereum node discovery, discv4 and discv5 (v5.1).
--
-- Install: copy this file into Wireshark's personal Lua plugins folder
-- (~/.local/lib/wireshark/plugins/, see Help > About > Folders), or run
--   tshark -X lua_script:wireshark/discotrace.lua ...
--
-- discv5 headers are masked with the DESTINATION node's ID and messages are encrypted
-- with session keys, so the dissector needs a key log: the file that
--   discotrace decode --keylog FILE ...   or   discotrace trace --keylog FILE ...
-- writes. Point the preference discv5.keylog at it (Edit > Preferences > Protocols >
-- DISCV5, or tshark -o discv5.keylog:FILE). A key log is SECRET: it decrypts the sessions
-- it lists (it never holds a node's private key).
--
-- Key log format (text, one entry per line, hex lowercase, fields separated by a space):
--   # comment
--   DISCV5_LOCAL_ID <node-id, 64 hex>
--   DISCV5_SESSION <handshake-nonce, 24 hex> <initiator-id> <recipient-id> <initiator-key, 32 hex> <recipient-key, 32 hex>
-- A local ID unmasks the headers sent to that node. A session's initiator-key encrypts
-- what the initiator sends (its HANDSHAKE, with the given nonce, and its later MESSAGEs),
-- the recipient-key what the recipient sends back. Besides the key log, the dissector
-- learns the src-id of every header it unmasks, and unmasks the replies to that node.
--
-- Wire layouts: devp2p discv4.md and discv5/discv5-wire.md; go-ethereum p2p/discover/v4wire
-- and v5wire. Wireshark's Lua has no cryptography, so AES-128 (encryption only: CTR mode
-- needs no decryption) is carried here. AES-GCM is CTR from counter 2 plus a tag; the
-- message is decrypted with CTR and the tag is not checked (shown as "unchecked"): a
-- session key is accepted for a message when the plaintext parses as a discv5 message.

------------------------------------------------------------------------------------------
-- Bit operations: Lua 5.2 (Wireshark <= 4.2) has bit32, Lua 5.3+ has operators.
local bxor
if bit32 then
    bxor = bit32.bxor
else
    bxor = load("return function(a, b) return a ~ b end")()
end

------------------------------------------------------------------------------------------
-- AES-128 encryption (FIPS-197), byte-oriented. Tables are computed once at load.
local SBOX, MUL2 = {}, {}
do
    local function xtime(a)
        a = a * 2
        if a >= 256 then a = bxor(a - 256, 0x1b) end
        return a
    end
    for a = 0, 255 do MUL2[a] = xtime(a) end
    -- exp/log tables with generator 3 give the multiplicative inverses.
    local exp, log = {}, {}
    local x = 1
    for i = 0, 254 do
        exp[i], log[x] = x, i
        x = bxor(x, xtime(x))
    end
    local function rotl8(b, n) return (b * 2 ^ n) % 256 + math.floor(b / 2 ^ (8 - n)) end
    for a = 0, 255 do
        local inv = 0
        if a ~= 0 then inv = exp[(255 - log[a]) % 255] end
        SBOX[a] = bxor(bxor(bxor(inv, rotl8(inv, 1)), bxor(rotl8(inv, 2), rotl8(inv, 3))), bxor(rotl8(inv, 4), 0x63))
    end
end

-- aes_expand returns the 176-byte round key schedule of a 16-byte key (a Lua string).
local function aes_expand(key)
    local w = { key:byte(1, 16) }
    local rcon = 1
    for i = 17, 176, 4 do
        local t1, t2, t3, t4 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
        if (i - 1) % 16 == 0 then
            t1, t2, t3, t4 = bxor(SBOX[t2], rcon), SBOX[t3], SBOX[t4], SBOX[t1]
            rcon = MUL2[rcon]
        end
        w[i], w[i + 1], w[i + 2], w[i + 3] = bxor(w[i - 16], t1), bxor(w[i - 15], t2), bxor(w[i - 14], t3), bxor(w[i - 13], t4)
    end
    return w
end

-- aes_encrypt encrypts the 16 bytes in (a table, 1-based) with round keys w; returns a table.
local function aes_encrypt(w, input)
    local s = {}
    for i = 1, 16 do s[i] = bxor(input[i], w[i]) end
    local t = {}
    for round = 1, 10 do
        -- SubBytes and ShiftRows: byte (row r, column c) is s[4c + r + 1].
        for c = 0, 3 do
            for r = 0, 3 do
                t[4 * c + r + 1] = SBOX[s[4 * ((c + r) % 4) + r + 1]]
            end
        end
        local k = 16 * round
        if round < 10 then
            for c = 0, 3 do
                local i = 4 * c + 1
                local a0, a1, a2, a3 = t[i], t[i + 1], t[i + 2], t[i + 3]
                local all = bxor(bxor(a0, a1), bxor(a2, a3))
                s[i] = bxor(bxor(a0, all), bxor(MUL2[bxor(a0, a1)], w[k + i]))
                s[i + 1] = bxor(bxor(a1, all), bxor(MUL2[bxor(a1, a2)], w[k + i + 1]))
                s[i + 2] = bxor(bxor(a2, all), bxor(MUL2[bxor(a2, a3)], w[k + i + 2]))
                s[i + 3] = bxor(bxor(a3, all), bxor(MUL2[bxor(a3, a0)], w[k + i + 3]))
            end
        else
            for i = 1, 16 do s[i] = bxor(t[i], w[k + i]) end
        end
    end
    return s
end

-- aes_ctr XORs data (a string) with the AES-CTR key stream of round keys w from the
-- 16-byte counter block iv (a string); the counter is one 128-bit big-endian number,
-- as Go's cipher.NewCTR counts. Returns a string.
local function aes_ctr(w, iv, data)
    local ctr = { iv:byte(1, 16) }
    local out = {}
    local n = #data
    for off = 0, n - 1, 16 do
        local ks = aes_encrypt(w, ctr)
        local chunk = {}
        for j = 1, math.min(16, n - off) do
            chunk[j] = string.char(bxor(data:byte(off + j), ks[j]))
        end
        out[#out + 1] = table.concat(chunk)
        for j = 16, 1, -1 do
            ctr[j] = (ctr[j] + 1) % 256
            if ctr[j] ~= 0 then break end
        end
    end
    return table.concat(out)
end

------------------------------------------------------------------------------------------
-- Small helpers.
local function tohex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function fromhex(h)
    return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function short(hexid) return hexid:sub(1, 8) end

-- be_number reads a big-endian unsigned integer of up to 8 bytes from s as UInt64.
local function be_uint64(s)
    if #s == 0 then return UInt64(0) end
    return UInt64.fromhex(tohex(s))
end

------------------------------------------------------------------------------------------
-- RLP. rlp_parse(s, pos, limit) parses one item of string s at 1-based pos, not beyond
-- limit, and returns the item and the position after it, or nil and the reason.
-- An item: { pos = first byte (1-based), vpos = value start, vlen = value length,
-- list = true/false, items = children (lists) }.
local MAX_DEPTH = 16

local function rlp_parse(s, pos, limit, depth)
    depth = depth or 0
    if depth > MAX_DEPTH then return nil, "RLP nested too deep" end
    if pos > limit then return nil, "RLP item missing (cut off)" end
    local b = s:byte(pos)
    local item = { pos = pos }
    local hlen, vlen
    if b < 0x80 then
        item.vpos, item.vlen, item.list = pos, 1, false
        return item, pos + 1
    elseif b <= 0xb7 then
        hlen, vlen, item.list = 1, b - 0x80, false
    elseif b <= 0xbf then
        local ll = b - 0xb7
        if ll > 4 or pos + ll > limit then return nil, "RLP string length cut off or too large" end
        vlen = 0
        for i = 1, ll do vlen = vlen * 256 + s:byte(pos + i) end
        hlen, item.list = 1 + ll, false
    elseif b <= 0xf7 then
        hlen, vlen, item.list = 1, b - 0xc0, true
    else
        local ll = b - 0xf7
        if ll > 4 or pos + ll > limit then return nil, "RLP list length cut off or too large" end
        vlen = 0
        for i = 1, ll do vlen = vlen * 256 + s:byte(pos + i) end
        hlen, item.list = 1 + ll, true
    end
    item.vpos, item.vlen = pos + hlen, vlen
    local after = item.vpos + vlen
    if after - 1 > limit then return nil, "RLP item longer than the packet (cut off)" end
    if item.list then
        item.items = {}
        local p = item.vpos
        while p < after do
            local child, next_or_err = rlp_parse(s, p, after - 1, depth + 1)
            if not child then return nil, next_or_err end
            item.items[#item.items + 1] = child
            p = next_or_err
        end
    end
    return item, after
end

-- rlp_whole parses s[pos..limit] as exactly one list.
local function rlp_whole(s, pos, limit)
    local item, after = rlp_parse(s, pos, limit)
    if not item then return nil, after end
    if not item.list then return nil, "payload is not an RLP list" end
    if after ~= limit + 1 then return nil, string.format("%d bytes after the RLP list", limit + 1 - after) end
    return item
end

local function rlp_value(s, item) return s:sub(item.vpos, item.vpos + item.vlen - 1) end

-- add_rlp shows an RLP item under tree: a string as its bytes, a list as a subtree.
-- tvb holds s at offset base (s's byte 1 is tvb offset base).
local function add_rlp(tree, tvb, base, s, item, name)
    local range = tvb(base + item.pos - 1, item.vpos + item.vlen - item.pos)
    if item.list then
        local sub = tree:add(range, string.format("%s: list of %d", name, #item.items))
        for i, child in ipairs(item.items) do add_rlp(sub, tvb, base, s, child, "[" .. (i - 1) .. "]") end
        return sub
    end
    local v = rlp_value(s, item)
    if #v == 0 then return tree:add(range, name .. ": (empty)") end
    return tree:add(range, name .. ": " .. tohex(v))
end

-- value_range is the tvb range of an RLP string's value (its header excluded).
local function value_range(tvb, base, item)
    return tvb(base + item.vpos - 1, item.vlen)
end

------------------------------------------------------------------------------------------
-- Protocols and fields.
local p_disc = Proto("ethdisc", "Ethereum Node Discovery")
local p_v4 = Proto("discv4", "Ethereum Node Discovery v4")
local p_v5 = Proto("discv5", "Ethereum Node Discovery v5")

local V4_TYPES = { [1] = "PING", [2] = "PONG", [3] = "FINDNODE", [4] = "NEIGHBORS", [5] = "ENRREQUEST", [6] = "ENRRESPONSE" }
local V5_FLAGS = { [0] = "MESSAGE", [1] = "WHOAREYOU", [2] = "HANDSHAKE" }
local V5_MSGS = { [1] = "PING", [2] = "PONG", [3] = "FINDNODE", [4] = "NODES", [5] = "TALKREQ", [6] = "TALKRESP" }

local f_disc_error = ProtoField.string("ethdisc.error", "Not discovery")

local f4 = {
    hash = ProtoField.bytes("discv4.hash", "Hash (keccak256 of signature, type, data)"),
    signature = ProtoField.bytes("discv4.signature", "Signature"),
    type_id = ProtoField.uint8("discv4.type_id", "Packet type", base.DEC, V4_TYPES),
    type = ProtoField.string("discv4.type", "Type"),
    version = ProtoField.bytes("discv4.version", "Version"),
    expiration = ProtoField.uint64("discv4.expiration", "Expiration (unix time)"),
    enr_seq = ProtoField.uint64("discv4.enr_seq", "ENR seq"),
    ping_hash = ProtoField.bytes("discv4.ping_hash", "Ping hash"),
    target = ProtoField.bytes("discv4.target", "Target public key"),
    nodes = ProtoField.uint32("discv4.nodes", "Nodes"),
    req_hash = ProtoField.bytes("discv4.request_hash", "Request hash"),
    enr = ProtoField.bytes("discv4.enr", "ENR"),
    error = ProtoField.string("discv4.error", "Malformed"),
}
p_v4.fields = { f4.hash, f4.signature, f4.type_id, f4.type, f4.version, f4.expiration, f4.enr_seq, f4.ping_hash, f4.target, f4.nodes, f4.req_hash, f4.enr, f4.error }

local f5 = {
    masking_iv = ProtoField.bytes("discv5.masking_iv", "Masking IV"),
    dst_id = ProtoField.bytes("discv5.dst_id", "Destination node ID (unmasked with)"),
    protocol_id = ProtoField.string("discv5.protocol_id", "Protocol ID"),
    version = ProtoField.uint16("discv5.version", "Version", base.HEX),
    flag = ProtoField.uint8("discv5.flag", "Flag", base.DEC, V5_FLAGS),
    kind = ProtoField.string("discv5.kind", "Packet kind"),
    nonce = ProtoField.bytes("discv5.nonce", "Nonce"),
    authdata_size = ProtoField.uint16("discv5.authdata_size", "Authdata size"),
    src_id = ProtoField.bytes("discv5.src_id", "Source node ID"),
    id_nonce = ProtoField.bytes("discv5.id_nonce", "ID nonce"),
    enr_seq = ProtoField.uint64("discv5.enr_seq", "ENR seq"),
    sig_size = ProtoField.uint8("discv5.sig_size", "Signature size"),
    eph_key_size = ProtoField.uint8("discv5.eph_key_size", "Ephemeral key size"),
    id_signature = ProtoField.bytes("discv5.id_signature", "ID signature"),
    eph_key = ProtoField.bytes("discv5.eph_key", "Ephemeral public key"),
    record = ProtoField.bytes("discv5.enr", "ENR"),
    message = ProtoField.bytes("discv5.message_data", "Message (encrypted)"),
    tag = ProtoField.bytes("discv5.tag", "GCM tag"),
    tag_status = ProtoField.string("discv5.tag_status", "GCM tag status"),
    msg = ProtoField.string("discv5.msg", "Message type"),
    msg_type = ProtoField.uint8("discv5.msg_type", "Message type number", base.DEC, V5_MSGS),
    req_id = ProtoField.bytes("discv5.req_id", "Request ID"),
    total = ProtoField.uint8("discv5.total", "Total"),
    nodes = ProtoField.uint32("discv5.nodes", "Records"),
    distance = ProtoField.uint16("discv5.distance", "Distance"),
    talk_protocol = ProtoField.bytes("discv5.talk_protocol", "TALK protocol"),
    talk_data = ProtoField.bytes("discv5.talk_data", "TALK payload"),
    ip = ProtoField.bytes("discv5.recipient_ip", "Recipient IP"),
    port = ProtoField.uint16("discv5.recipient_port", "Recipient port"),
    undecrypted = ProtoField.string("discv5.undecrypted", "Not decrypted"),
    masked = ProtoField.string("discv5.masked", "Masked"),
    error = ProtoField.string("discv5.error", "Malformed"),
    bug = ProtoField.string("discv5.dissector_bug", "Dissector bug"),
}
p_v5.fields = {}
for _, f in pairs(f5) do table.insert(p_v5.fields, f) end
p_disc.fields = { f_disc_error }

local e_v4_malformed = ProtoExpert.new("discv4.malformed", "Malformed discv4 packet", expert.group.MALFORMED, expert.severity.ERROR)
local e_v5_malformed = ProtoExpert.new("discv5.malformed", "Malformed discv5 packet", expert.group.MALFORMED, expert.severity.ERROR)
local e_disc_malformed = ProtoExpert.new("ethdisc.malformed", "Neither discv4 nor discv5", expert.group.MALFORMED, expert.severity.ERROR)
local e_bug = ProtoExpert.new("discv5.bug", "discotrace.lua failed on this packet (please report)", expert.group.UNDECODED, expert.severity.ERROR)
local e_tag = ProtoExpert.new("discv5.tag_unchecked", "GCM tag not checked (no GHASH in Lua)", expert.group.SECURITY, expert.severity.NOTE)
p_v4.experts = { e_v4_malformed }
p_v5.experts = { e_v5_malformed, e_bug, e_tag }
p_disc.experts = { e_disc_malformed }

p_v5.prefs.keylog = Pref.string("Key log file", "", "The discv5 key log written by `discotrace decode --keylog FILE` or `discotrace trace --keylog FILE` (secret: it decrypts sessions)")

------------------------------------------------------------------------------------------
-- Key log and what was learned from the capture.
local keys = {
    path = nil, size = -1,
    candidates = {}, -- list of { id = hex, w = round keys of the first 16 bytes }
    by_id = {},      -- hex -> candidate
    sessions = {},   -- list in key log order
    by_nonce = {},   -- nonce hex -> session
    by_pair = {},    -- src hex .. dst hex -> list of round keys, newest first
}

local last_at = {} -- destination "address port" -> the candidate that last unmasked there

local function add_candidate(idhex)
    if keys.by_id[idhex] then return end
    local c = { id = idhex, w = aes_expand(fromhex(idhex:sub(1, 32))) }
    keys.by_id[idhex] = c
    keys.candidates[#keys.candidates + 1] = c
end

local function add_pair_key(src, dst, w)
    local k = src .. dst
    local list = keys.by_pair[k] or {}
    table.insert(list, 1, w)
    keys.by_pair[k] = list
end

local function load_keylog(force)
    local path = p_v5.prefs.keylog
    if path == nil or path == "" then return end
    local f = io.open(path, "r")
    if not f then return end
    local size = f:seek("end")
    if not force and path == keys.path and size == keys.size then
        f:close()
        return
    end
    f:seek("set", 0)
    keys.path, keys.size = path, size
    keys.sessions, keys.by_nonce, keys.by_pair = {}, {}, {}
    for line in f:lines() do
        local id = line:match("^DISCV5_LOCAL_ID (%x+)%s*$")
        if id and #id == 64 then add_candidate(id:lower()) end
        local nonce, ini, rec, ikey, rkey = line:match("^DISCV5_SESSION (%x+) (%x+) (%x+) (%x+) (%x+)%s*$")
        if nonce and #nonce == 24 and #ini == 64 and #rec == 64 and #ikey == 32 and #rkey == 32 then
            ini, rec = ini:lower(), rec:lower()
            local s = { nonce = nonce:lower(), initiator = ini, recipient = rec, ikey = aes_expand(fromhex(ikey)), rkey = aes_expand(fromhex(rkey)) }
            keys.sessions[#keys.sessions + 1] = s
            keys.by_nonce[s.nonce] = s
            add_pair_key(ini, rec, s.ikey)
            add_pair_key(rec, ini, s.rkey)
            add_candidate(ini)
            add_candidate(rec)
        end
    end
    f:close()
end

function p_v5.init()
    keys.candidates, keys.by_id, keys.path, keys.size = {}, {}, nil, -1
    last_at = {}
    load_keylog(true)
end

function p_v5.prefs_changed()
    keys.path = nil
    load_keylog(true)
end

------------------------------------------------------------------------------------------
-- discv4: hash(32) || signature(65) || type(1) || RLP list.
local V4_HEAD = 98

-- v4_plausible: the layout of a discv4 packet, without the hash (no keccak in Lua).
local function v4_plausible(s)
    if #s < V4_HEAD + 1 then return false end
    local t = s:byte(V4_HEAD)
    if not V4_TYPES[t] then return false end
    return rlp_whole(s, V4_HEAD + 1, #s) ~= nil
end

local function v4_malformed(tree, pinfo, range, why)
    local item = tree:add(f4.error, range, why)
    item:add_proto_expert_info(e_v4_malformed, why)
    pinfo.cols.info:append(" [malformed: " .. why .. "]")
end

local function add_endpoint(tree, tvb, s, item, name)
    local sub = add_rlp(tree, tvb, 0, s, item, name)
    if item.list and #item.items >= 2 then
        local ip = rlp_value(s, item.items[1])
        local text
        if #ip == 4 then
            text = string.format("%d.%d.%d.%d", ip:byte(1, 4))
        elseif #ip == 16 then
            text = "[" .. tohex(ip) .. "]"
        end
        local port = rlp_value(s, item.items[2])
        if text and #port <= 2 then
            local n = 0
            for i = 1, #port do n = n * 256 + port:byte(i) end
            sub:append_text(string.format(" (%s:%d)", text, n))
        end
    end
end

local function add_uint64(tree, field, tvb, base, s, item, what, malformed)
    if item.list or item.vlen > 8 then
        malformed(what .. " is not an integer of at most 8 bytes")
        return
    end
    tree:add(field, value_range(tvb, base, item), be_uint64(rlp_value(s, item)))
end

local function dissect_v4(tvb, pinfo, root)
    local s = tvb:raw(0, tvb:len())
    pinfo.cols.protocol:set("discv4")
    local tree = root:add(p_v4, tvb())
    if #s < V4_HEAD + 1 then
        pinfo.cols.info:set("discv4")
        v4_malformed(tree, pinfo, tvb(), string.format("%d bytes, shorter than the %d-byte header and a type", #s, V4_HEAD))
        return
    end
    tree:add(f4.hash, tvb(0, 32))
    tree:add(f4.signature, tvb(32, 65))
    local t = s:byte(V4_HEAD)
    local name = V4_TYPES[t] or string.format("unknown type %d", t)
    tree:add(f4.type_id, tvb(97, 1))
    tree:add(f4.type, tvb(97, 1), name)
    pinfo.cols.info:set(name)
    local malformed = function(why) v4_malformed(tree, pinfo, tvb(), why) end
    if not V4_TYPES[t] then
        malformed("unknown packet type " .. t)
        return
    end
    local list, err = rlp_whole(s, V4_HEAD + 1, #s)
    if not list then
        malformed(err)
        return
    end
    local body = tree:add(tvb(V4_HEAD, #s - V4_HEAD), name .. " data (RLP)")
    local it = list.items
    local names = ({
        [1] = { "version", "from", "to", "expiration", "enr-seq" },
        [2] = { "to", "ping-hash", "expiration", "enr-seq" },
        [3] = { "target", "expiration" },
        [4] = { "nodes", "expiration" },
        [5] = { "expiration" },
        [6] = { "request-hash", "enr" },
    })[t]
    -- Later fields are allowed (forward compatibility, EIP-8); missing ones are not.
    local need = ({ [1] = 4, [2] = 3, [3] = 2, [4] = 2, [5] = 1, [6] = 2 })[t]
    if #it < need then
        malformed(string.format("%s has %d fields, want at least %d", name, #it, need))
        return
    end
    for i, item in ipairs(it) do
        local n = names[i] or ("extra field " .. i)
        if n == "from" or n == "to" then
            add_endpoint(body, tvb, s, item, n)
        elseif n == "expiration" then
            add_uint64(body, f4.expiration, tvb, 0, s, item, n, malformed)
        elseif n == "enr-seq" then
            add_uint64(body, f4.enr_seq, tvb, 0, s, item, n, malformed)
        elseif n == "version" and not item.list then
            body:add(f4.version, value_range(tvb, 0, item))
        elseif n == "ping-hash" and not item.list then
            body:add(f4.ping_hash, value_range(tvb, 0, item))
        elseif n == "target" and not item.list then
            body:add(f4.target, value_range(tvb, 0, item))
        elseif n == "request-hash" and not item.list then
            body:add(f4.req_hash, value_range(tvb, 0, item))
        elseif n == "enr" and item.list then
            body:add(f4.enr, tvb(item.pos - 1, item.vpos + item.vlen - item.pos))
        elseif n == "nodes" and item.list then
            local sub = add_rlp(body, tvb, 0, s, item, "nodes")
            sub:add(f4.nodes, tvb(item.pos - 1, 1), #item.items):set_generated()
            pinfo.cols.info:append(string.format(" (%d nodes)", #item.items))
        else
            add_rlp(body, tvb, 0, s, item, n)
        end
    end
end

------------------------------------------------------------------------------------------
-- discv5: masking-iv(16) || masked(static-header(23) || authdata) || message.
local IV_SIZE, STATIC_END, MIN_V5 = 16, 39, 63

-- v5_unmask finds the candidate ID that unmasks s: returns the candidate and the
-- unmasked static header and authdata (a string starting at the protocol ID), or nil.
-- hint, when given, is tried first: the ID that last unmasked a packet to the same
-- address, which spares an AES block per other candidate on a busy capture.
local function v5_unmask(s, hint)
    if #s < MIN_V5 then return nil end
    local iv = s:sub(1, 16)
    local first = { s:byte(17, 32) }
    local want = { 0x64, 0x69, 0x73, 0x63, 0x76, 0x35, 0x00, 0x01 } -- "discv5", version 1
    local n = #keys.candidates
    for i = 0, n do
        local c
        if i == 0 then c = hint else c = keys.candidates[i] end
        local ok = c ~= nil and (i == 0 or c ~= hint)
        if ok then
            local ks = aes_encrypt(c.w, { iv:byte(1, 16) })
            for j = 1, 8 do
                if bxor(first[j], ks[j]) ~= want[j] then
                    ok = false
                    break
                end
            end
        end
        if ok then
            local static = aes_ctr(c.w, iv, s:sub(17, STATIC_END))
            local asize = static:byte(22) * 256 + static:byte(23)
            local hdr_end = math.min(STATIC_END + asize, #s)
            return c, aes_ctr(c.w, iv, s:sub(17, hdr_end)), asize
        end
    end
    return nil
end

-- v5_decode_message parses a plaintext (type byte || RLP list); returns type, list or nil, reason.
local function v5_parse_message(pt)
    if #pt < 2 then return nil, nil, "message shorter than a type and a list" end
    local t = pt:byte(1)
    if not V5_MSGS[t] then return nil, nil, "unknown message type " .. t end
    local list, err = rlp_whole(pt, 2, #pt)
    if not list then return nil, nil, err end
    if #list.items < 1 or list.items[1].list or list.items[1].vlen > 8 then return nil, nil, "no request ID" end
    return t, list
end

local function v5_malformed(tree, pinfo, range, why)
    local item = tree:add(f5.error, range, why)
    item:add_proto_expert_info(e_v5_malformed, why)
    pinfo.cols.info:append(" [malformed: " .. why .. "]")
end

local function show_message(tree, pinfo, ptvb, pt, t, list)
    local name = V5_MSGS[t]
    local sub = tree:add(ptvb(), "Message: " .. name)
    sub:add(f5.msg_type, ptvb(0, 1))
    sub:add(f5.msg, ptvb(0, 1), name)
    local it = list.items
    local req = it[1]
    sub:add(f5.req_id, value_range(ptvb, 0, req))
    local info = string.format(" %s req=%s", name, tohex(rlp_value(pt, req)))
    local names = ({
        [1] = { "req-id", "enr-seq" },
        [2] = { "req-id", "enr-seq", "recipient-ip", "recipient-port" },
        [3] = { "req-id", "distances" },
        [4] = { "req-id", "total", "nodes" },
        [5] = { "req-id", "protocol", "request" },
        [6] = { "req-id", "response" },
    })[t]
    local malformed = function(why) v5_malformed(tree, pinfo, ptvb(), why) end
    for i = 2, #it do
        local item, n = it[i], names[i] or ("extra field " .. i)
        if n == "enr-seq" then
            add_uint64(sub, f5.enr_seq, ptvb, 0, pt, item, n, malformed)
        elseif n == "recipient-ip" and not item.list then
            sub:add(f5.ip, value_range(ptvb, 0, item))
        elseif n == "recipient-port" and not item.list and item.vlen <= 2 then
            local v = rlp_value(pt, item)
            local port = 0
            for j = 1, #v do port = port * 256 + v:byte(j) end
            sub:add(f5.port, value_range(ptvb, 0, item), port)
        elseif n == "total" and not item.list and item.vlen <= 1 then
            sub:add(f5.total, value_range(ptvb, 0, item), item.vlen == 1 and rlp_value(pt, item):byte(1) or 0)
        elseif n == "nodes" and item.list then
            local ns = add_rlp(sub, ptvb, 0, pt, item, "nodes")
            ns:add(f5.nodes, ptvb(item.pos - 1, 1), #item.items):set_generated()
            info = info .. string.format(" (%d records)", #item.items)
        elseif n == "distances" and item.list then
            local ds = sub:add(ptvb(item.pos - 1, item.vpos + item.vlen - item.pos), "distances")
            local shown = {}
            for _, d in ipairs(item.items) do
                if not d.list and d.vlen <= 2 then
                    local v = rlp_value(pt, d)
                    local n2 = 0
                    for j = 1, #v do n2 = n2 * 256 + v:byte(j) end
                    ds:add(f5.distance, value_range(ptvb, 0, d), n2)
                    shown[#shown + 1] = tostring(n2)
                end
            end
            info = info .. " d=" .. table.concat(shown, ",")
        elseif (n == "protocol") and not item.list then
            sub:add(f5.talk_protocol, value_range(ptvb, 0, item))
        elseif (n == "request" or n == "response") and not item.list then
            sub:add(f5.talk_data, value_range(ptvb, 0, item))
        else
            add_rlp(sub, ptvb, 0, pt, item, n)
        end
    end
    pinfo.cols.info:append(info)
end

-- try_decrypt tries each key (round keys) on the message; returns the plaintext parsed.
local function try_decrypt(keylist, nonce, ct)
    local iv = nonce .. "\0\0\0\2"
    for _, w in ipairs(keylist) do
        local pt = aes_ctr(w, iv, ct)
        local t, list = v5_parse_message(pt)
        if t then return pt, t, list end
    end
    return nil
end

local function dissect_v5(tvb, pinfo, root, cand, hdr, asize)
    local s = tvb:raw(0, tvb:len())
    pinfo.cols.protocol:set("discv5")
    local tree = root:add(p_v5, tvb())
    tree:add(f5.masking_iv, tvb(0, IV_SIZE))
    tree:add(f5.dst_id, tvb(IV_SIZE, 32), fromhex(cand.id)):set_generated()
    -- The unmasked header is a new data source: its offsets are the packet's minus 16.
    local htvb = ByteArray.new(hdr, true):tvb("Unmasked discv5 header")
    local htree = tree:add(htvb(), "Unmasked header")
    htree:add(f5.protocol_id, htvb(0, 6))
    htree:add(f5.version, htvb(6, 2))
    local flag = hdr:byte(9)
    htree:add(f5.flag, htvb(8, 1))
    local kind = V5_FLAGS[flag] or ("unknown flag " .. flag)
    htree:add(f5.kind, htvb(8, 1), kind)
    htree:add(f5.nonce, htvb(9, 12))
    htree:add(f5.authdata_size, htvb(21, 2))
    local nonce = hdr:sub(10, 21)
    pinfo.cols.info:set(kind)
    local malformed = function(why) v5_malformed(tree, pinfo, tvb(), why) end
    if not V5_FLAGS[flag] then
        malformed("unknown flag " .. flag)
        return
    end
    if STATIC_END + asize > #s then
        malformed(string.format("authdata-size %d exceeds the %d bytes after the static header", asize, #s - STATIC_END))
        return
    end
    local a = 24 -- 1-based position of authdata in hdr
    local atvb_off = 23 -- its offset in htvb
    local src
    if flag == 1 then
        if asize ~= 24 then
            malformed(string.format("WHOAREYOU authdata-size %d, want 24", asize))
            return
        end
        htree:add(f5.id_nonce, htvb(atvb_off, 16))
        htree:add(f5.enr_seq, htvb(atvb_off + 16, 8))
        pinfo.cols.info:append(string.format(" nonce=%s to=%s enr-seq=%s", tohex(nonce), short(cand.id), tostring(be_uint64(hdr:sub(a + 16, a + 23)))))
        if #s ~= STATIC_END + asize then
            malformed(string.format("%d bytes after a WHOAREYOU", #s - STATIC_END - asize))
        end
        return
    end
    if flag == 0 then
        if asize ~= 32 then
            malformed(string.format("MESSAGE authdata-size %d, want 32", asize))
            return
        end
        htree:add(f5.src_id, htvb(atvb_off, 32))
        src = tohex(hdr:sub(a, a + 31))
    else
        if asize < 34 then
            malformed(string.format("HANDSHAKE authdata-size %d, want at least 34", asize))
            return
        end
        htree:add(f5.src_id, htvb(atvb_off, 32))
        src = tohex(hdr:sub(a, a + 31))
        local sig_size, key_size = hdr:byte(a + 32), hdr:byte(a + 33)
        htree:add(f5.sig_size, htvb(atvb_off + 32, 1))
        htree:add(f5.eph_key_size, htvb(atvb_off + 33, 1))
        if 34 + sig_size + key_size > asize then
            malformed(string.format("signature (%d) and ephemeral key (%d) exceed the authdata (%d)", sig_size, key_size, asize))
            return
        end
        if sig_size > 0 then htree:add(f5.id_signature, htvb(atvb_off + 34, sig_size)) end
        if key_size > 0 then htree:add(f5.eph_key, htvb(atvb_off + 34 + sig_size, key_size)) end
        local rec_len = asize - 34 - sig_size - key_size
        if rec_len > 0 then
            local rpos = a + 34 + sig_size + key_size
            local ri = htree:add(f5.record, htvb(atvb_off + 34 + sig_size + key_size, rec_len))
            local rec, err = rlp_parse(hdr, rpos, rpos + rec_len - 1)
            if not rec or not rec.list or rec.vpos + rec.vlen - rpos ~= rec_len then
                malformed("handshake ENR: " .. (err or "not one RLP list"))
                return
            end
            add_rlp(ri, htvb, 0, hdr, rec, "record")
        end
    end
    pinfo.cols.info:append(string.format(" %s->%s nonce=%s", short(src), short(cand.id), tohex(nonce)))
    -- The sender is now a known ID: replies to it unmask.
    if not pinfo.visited then add_candidate(src) end

    local mstart = STATIC_END + asize
    if #s - mstart < 16 then
        malformed(string.format("message of %d bytes, shorter than the GCM tag", #s - mstart))
        return
    end
    local ct = s:sub(mstart + 1, #s - 16)
    tree:add(f5.message, tvb(mstart, #s - mstart - 16))
    local tag_item = tree:add(f5.tag, tvb(#s - 16, 16))
    local keylist
    if flag == 2 then
        local sess = keys.by_nonce[tohex(nonce)]
        if sess and sess.initiator == src and sess.recipient == cand.id then keylist = { sess.ikey } end
    else
        keylist = keys.by_pair[src .. cand.id]
    end
    local pt, t, list
    if keylist then pt, t, list = try_decrypt(keylist, nonce, ct) end
    if not pt then
        local why = "no session key in the key log"
        if keylist then why = "no key in the key log decrypts it" end
        if flag == 0 and #s - mstart == 20 then why = why .. " (20 bytes: likely the random packet that asks for a handshake)" end
        tree:add(f5.undecrypted, tvb(mstart, #s - mstart), why)
        pinfo.cols.info:append(" [" .. why .. "]")
        return
    end
    tree:add(f5.tag_status, tvb(#s - 16, 16), "unchecked")
    tag_item:add_proto_expert_info(e_tag)
    local ptvb = ByteArray.new(pt, true):tvb("Decrypted discv5 message")
    show_message(tree, pinfo, ptvb, pt, t, list)
end

------------------------------------------------------------------------------------------
-- Dispatch: discv5 when a known ID unmasks it, else discv4 when it has its layout.

-- classify returns "v5" (with the unmasking), "v4", "masked" (the length of a discv5
-- packet whose destination no key log ID unmasks) or nil.
local function classify(s, dst)
    local cand, hdr, asize = v5_unmask(s, last_at[dst])
    if not cand and #s >= MIN_V5 then
        load_keylog(false) -- a live key log may have grown
        cand, hdr, asize = v5_unmask(s, last_at[dst])
    end
    if cand then
        last_at[dst] = cand
        return "v5", cand, hdr, asize
    end
    if v4_plausible(s) then return "v4" end
    return nil
end

local function dissect_masked(tvb, pinfo, root)
    pinfo.cols.protocol:set("discv5")
    local tree = root:add(p_v5, tvb())
    tree:add(f5.masking_iv, tvb(0, IV_SIZE))
    local why = "header masked with a destination ID not in the key log (set discv5.keylog)"
    tree:add(f5.masked, tvb(IV_SIZE), why)
    pinfo.cols.info:set("discv5? [" .. why .. "]")
end

-- guarded runs a dissection step; a Lua error in it is shown as a dissector bug on the
-- packet instead of aborting the dissection.
local function guarded(fn, tvb, pinfo, root, ...)
    local ok, err = pcall(fn, tvb, pinfo, root, ...)
    if not ok then
        local item = root:add(f5.bug, tvb(), tostring(err))
        item:add_proto_expert_info(e_bug, "discotrace.lua: " .. tostring(err))
    end
end

local function dissect_any(tvb, pinfo, root, heuristic)
    local n = tvb:len()
    if n == 0 then
        if heuristic then return false end
        return 0
    end
    local s = tvb:raw(0, n)
    local kind, cand, hdr, asize = classify(s, tostring(pinfo.dst) .. " " .. tostring(pinfo.dst_port))
    if kind == "v5" then
        guarded(dissect_v5, tvb, pinfo, root, cand, hdr, asize)
    elseif kind == "v4" then
        guarded(dissect_v4, tvb, pinfo, root)
    elseif heuristic then
        return false
    elseif n >= V4_HEAD + 1 and (V4_TYPES[s:byte(V4_HEAD)] or rlp_whole(s, V4_HEAD + 1, n)) then
        -- A discv4 type with a broken body, or a discv4 body with an unknown type: show
        -- it as a malformed discv4 packet.
        guarded(dissect_v4, tvb, pinfo, root)
    elseif n >= MIN_V5 then
        guarded(dissect_masked, tvb, pinfo, root)
    else
        pinfo.cols.protocol:set("ethdisc")
        pinfo.cols.info:set(string.format("%d bytes: too short for discv4 (%d) or discv5 (%d)", n, V4_HEAD + 1, MIN_V5))
        local why = string.format("%d bytes, shorter than any discv4 or discv5 packet", n)
        local item = root:add(p_disc, tvb()):add(f_disc_error, tvb(), why)
        item:add_proto_expert_info(e_disc_malformed, why)
    end
    if heuristic then return true end
    return n
end

function p_disc.dissector(tvb, pinfo, root)
    return dissect_any(tvb, pinfo, root, false)
end

local udp_port = DissectorTable.get("udp.port")
udp_port:add(30303, p_disc)
udp_port:add(9000, p_disc)

-- The heuristic takes a datagram on any other port only when it is certainly discovery:
-- a header a key log ID unmasks, or a discv4 layout with a valid RLP body.
p_disc:register_heuristic("udp", function(tvb, pinfo, root)
    return dissect_any(tvb, pinfo, root, true)
end)
