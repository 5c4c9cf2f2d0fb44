// A real OIDC/OAuth2 identity provider for frontgate's end-to-end tests:
// oauth2-mock-server (npm) served over HTTPS, driven by the Python tests
// through a line protocol on stdin/stdout.
//
//   node idp.mjs --port PORT --cert CERT.pem --key KEY.pem [--down]
//
// PORT 0 lets the kernel choose (not with --down). The issuer URL is
// https://127.0.0.1:PORT. With --down the IdP starts without listening
// (the test sends "serve" later). The module directory comes from
// FG_NODE_MODULES (default: ../../node_modules next to this file).
//
// Protocol: one JSON object per line each way. The first line out is
// {"event":"started","issuer":...,"port":...,"serving":bool,"kid":...}.
// Each request {"op":...} gets one reply {"ok":true,...} or
// {"ok":false,"error":"..."}; requests are answered in order.
//
//   serve                   listen on the port again           -> {port}
//   stop                    stop listening and drop every open connection (IdP down)
//   mint {claims, header, kid, expiresIn}
//                           a token signed by the IdP (current key unless kid); claims
//                           and header entries are merged over oauth2-mock-server's
//                           defaults (iss, iat, exp, nbf); a claim set to null is removed
//   sign {payload, kid}     an RS256 token over the exact payload text (any JSON)
//   rotate {alg, kid}       add a new signing key (RS256 unless alg) and sign with it
//   retire {kid}            stop publishing that key in the JWKS (it can still sign)
//   jwks                    the public JWKS (every key)            -> {keys, kid}
//   counts                  requests served by path                -> {discovery, jwks, token, total}
//   tokenClaims {claims}    claims added to tokens from the /token endpoint
//   tokenResponse {status, expiresIn}
//                           how /token answers from now on: status (e.g. 500: an OAuth2
//                           server_error body instead of a token; null or 200: a token) and
//                           the expires_in it reports (null: oauth2-mock-server's 3600)
//   tokenRequests           the /token requests served so far -> {requests: [{authorization,
//                           contentType, body}]} (body: the parsed form)
//   quit                    exit
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createPrivateKey, randomBytes, sign } from "node:crypto";

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.FG_NODE_MODULES || join(here, "..", "..", "node_modules");

function arg(name, dflt) {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dflt;
}

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

// oauth2-mock-server 7.x (the line that runs on Node.js 18, pinned in tests/package.json) is
// CommonJS and leaves OAuth2Service out of its index; 8.x (Node.js 20 and later) exports it.
async function loadMockServer() {
    const dir = join(nodeModules, "oauth2-mock-server");
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const exp = pkg.exports && pkg.exports["."];
    const entry = (exp && (exp.import || exp.default)) || pkg.main;
    const mod = await import(pathToFileURL(join(dir, entry)).href);
    if (mod.OAuth2Service) return mod;
    const svc = await import(pathToFileURL(join(dir, "dist", "lib", "oauth2-service.js")).href);
    return { ...mod, OAuth2Service: svc.OAuth2Service };
}

const { OAuth2Issuer, OAuth2Service } = await loadMockServer();

const host = "127.0.0.1";
let port = Number(arg("--port", "0"));
const tls = { key: readFileSync(arg("--key")), cert: readFileSync(arg("--cert")) };
const startDown = process.argv.includes("--down");

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);
let currentKid = `kid-1-${randomBytes(4).toString("hex")}`;
let nkeys = 1;
await issuer.keys.generate("RS256", { kid: currentKid });

const counts = { discovery: 0, jwks: 0, token: 0, total: 0 };
let tokenClaims = {};
let tokenStatus = 200;
let tokenExpiresIn = null;
const tokenRequests = [];
const retired = new Set();
service.on("beforeTokenSigning", (token) => Object.assign(token.payload, tokenClaims));
service.on("beforeResponse", (response, req) => {
    tokenRequests.push({
        authorization: req.headers.authorization ?? null,
        contentType: req.headers["content-type"] ?? null,
        body: { ...req.body },
    });
    if (tokenStatus !== 200) {
        response.statusCode = tokenStatus;
        response.body = { error: "server_error", error_description: "the IdP was told to fail" };
    } else if (tokenExpiresIn !== null) {
        response.body.expires_in = tokenExpiresIn;
    }
});

const handler = service.requestHandler;
let server = null;
const sockets = new Set();

function listen() {
    return new Promise((resolve, reject) => {
        const s = createServer(tls, (req, res) => {
            const path = (req.url || "").split("?")[0];
            counts.total++;
            if (path === "/.well-known/openid-configuration") counts.discovery++;
            else if (path === "/jwks") counts.jwks++;
            else if (path === "/token") counts.token++;
            if (path === "/jwks" && retired.size > 0) {
                // oauth2-mock-server cannot delete a key: serve its JWKS without the retired ones
                const keys = issuer.keys.toJSON().filter((k) => !retired.has(k.kid));
                res.writeHead(200, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ keys }));
                return;
            }
            handler(req, res);
        });
        s.on("connection", (sock) => {
            sockets.add(sock);
            sock.on("close", () => sockets.delete(sock));
        });
        s.once("error", reject);
        s.listen(port, host, () => {
            port = s.address().port;
            server = s;
            resolve();
        });
    });
}

function close() {
    if (server === null) return Promise.resolve();
    const s = server;
    server = null;
    return new Promise((resolve) => {
        s.close(() => resolve());
        for (const sock of sockets) sock.destroy();
        sockets.clear();
        s.closeAllConnections?.();
    });
}

function setUrl() {
    issuer.url = `https://${host}:${port}`;
}

async function handle(req) {
    switch (req.op) {
        case "serve":
            if (server === null) await listen();
            setUrl();
            return { port, issuer: issuer.url };
        case "stop":
            await close();
            return {};
        case "mint": {
            const claims = req.claims || {};
            const header = req.header || {};
            const token = await issuer.buildToken({
                kid: req.kid || currentKid,
                expiresIn: req.expiresIn,
                scopesOrTransform: (h, p) => {
                    Object.assign(h, header);
                    for (const [k, v] of Object.entries(claims)) {
                        if (v === null) delete p[k];
                        else p[k] = v;
                    }
                },
            });
            return { token };
        }
        case "sign": {
            // JSON that jose cannot serialize (V8's JSON.stringify overflows its stack
            // on a 5,000-deep array): sign the exact payload text with the IdP's key
            const jwk = issuer.keys.toJSON(true).find((k) => k.kid === (req.kid || currentKid));
            if (jwk === undefined || jwk.kty !== "RSA") throw new Error("no such RSA key");
            const b64 = (text) => Buffer.from(text).toString("base64url");
            const header = { typ: "JWT", kid: jwk.kid, alg: "RS256" };
            const input = `${b64(JSON.stringify(header))}.${b64(req.payload)}`;
            const { alg, use, ...material } = jwk;
            const key = createPrivateKey({ key: material, format: "jwk" });
            return { token: `${input}.${sign("sha256", Buffer.from(input), key).toString("base64url")}` };
        }
        case "rotate": {
            nkeys++;
            const kid = req.kid || `kid-${nkeys}-${randomBytes(4).toString("hex")}`;
            await issuer.keys.generate(req.alg || "RS256", { kid });
            currentKid = kid;
            return { kid };
        }
        case "retire":
            retired.add(req.kid);
            return {};
        case "jwks":
            return { keys: issuer.keys.toJSON(), kid: currentKid };
        case "counts":
            return { ...counts };
        case "tokenClaims":
            tokenClaims = req.claims || {};
            return {};
        case "tokenResponse":
            tokenStatus = req.status ?? 200;
            tokenExpiresIn = req.expiresIn ?? null;
            return {};
        case "tokenRequests":
            return { requests: tokenRequests };
        case "quit":
            await close();
            out({ ok: true });
            process.exit(0);
        default:
            throw new Error(`unknown op ${JSON.stringify(req.op)}`);
    }
}

if (!startDown) await listen();
setUrl();
out({ event: "started", issuer: issuer.url, port, serving: server !== null, kid: currentKid });

// Requests are handled one at a time, in order.
let chain = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
    chain = chain.then(async () => {
        let reply;
        try {
            reply = { ok: true, ...(await handle(JSON.parse(line))) };
        } catch (e) {
            reply = { ok: false, error: String(e && e.message ? e.message : e) };
        }
        out(reply);
    });
});
rl.on("close", () => {
    chain.then(close).then(() => process.exit(0));
});
