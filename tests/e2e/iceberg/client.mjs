// iceberg-js (npm, a real Iceberg REST client) driven by frontgate's
// end-to-end tests: runs a list of catalog operations and prints one JSON
// line with the outcome of each.
//
//   node client.mjs < spec.json     (the spec on stdin, so the token is not in argv)
//
//   {"baseUrl":"http://127.0.0.1:PORT/catalog", "catalogName":"<warehouse id>", "token":"fgk_...",
//    "steps":[{"op":"list"},{"op":"create","namespace":["a"],"properties":{}},
//             {"op":"load","namespace":["a"]},{"op":"exists","namespace":["a"]}]}
//
// iceberg-js never calls /v1/config: it builds {baseUrl}/v1/{catalogName}/...,
// so catalogName is the catalog's prefix (Lakekeeper: the warehouse id).
// Output: {"results":[{"ok":true,"value":...} | {"ok":false,"status":N,"type":..,"code":..,"message":..}]}
// The module directory comes from FG_NODE_MODULES (default: ../../node_modules).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.FG_NODE_MODULES || join(here, "..", "..", "node_modules");

async function loadIcebergJs() {
    const dir = join(nodeModules, "iceberg-js");
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const exp = pkg.exports && pkg.exports["."];
    const imp = exp && exp.import;
    const entry = (imp && (typeof imp === "string" ? imp : imp.default)) || pkg.module || pkg.main;
    return import(pathToFileURL(join(dir, entry)).href);
}

const { IcebergRestCatalog, IcebergError } = await loadIcebergJs();
const spec = JSON.parse(readFileSync(0, "utf8"));
const catalog = new IcebergRestCatalog({
    baseUrl: spec.baseUrl,
    catalogName: spec.catalogName,
    auth: spec.token ? { type: "bearer", token: spec.token } : { type: "none" },
});

async function step(s) {
    switch (s.op) {
        case "list":
            return catalog.listNamespaces(s.parent ? { namespace: s.parent } : undefined);
        case "create":
            return catalog.createNamespace({ namespace: s.namespace }, { properties: s.properties || {} });
        case "load":
            return catalog.loadNamespaceMetadata({ namespace: s.namespace });
        case "exists":
            return catalog.namespaceExists({ namespace: s.namespace });
        default:
            throw new Error(`unknown op ${s.op}`);
    }
}

const results = [];
for (const s of spec.steps) {
    try {
        results.push({ ok: true, value: (await step(s)) ?? null });
    } catch (e) {
        if (e instanceof IcebergError) {
            results.push({ ok: false, status: e.status, type: e.icebergType ?? null,
                           code: e.icebergCode ?? null, message: e.message });
        } else {
            results.push({ ok: false, status: null, error: String(e && e.stack ? e.stack : e) });
        }
    }
}
process.stdout.write(JSON.stringify({ results }) + "\n");
