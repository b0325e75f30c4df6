// A StableStudio stand-in on the unmodified @agentcash/router, served by @hono/node-server on 127.0.0.1.
//
// The five routes the client uses: POST /api/upload (static $0.01), POST /api/generate/flux-2-pro/edit
// (priced by resolution, maxPrice $10), POST /api/upload/confirm and GET /api/jobs/{id} (SIWX), and the
// blob PUT an upload needs (a Vercel Blob stand-in outside the router, as in production). Payments are
// verified and settled by the official x402 facilitator over an in-memory token (local-chain.mjs).
//
// Environment: STANDIN_PORT (default 80: the router's SIWX domain is the host name without the port, so
// only port 80 matches what a browser-style client expects; production is on 443), STANDIN_JOB_MS (how
// long a job stays pending, default 300), STANDIN_MAX_UPLOAD_BYTES (the upload schema's size limit, default
// 8 MiB: a server-side rule a client cannot know before it is told).
import { randomBytes, randomUUID, createHash } from "node:crypto";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { z } from "zod";
import { createRouterFromEnv } from "@agentcash/router";
import { InMemoryUsdc, confineFetchToLoopback, installLocalFacilitator } from "./local-chain.mjs";

// STANDIN_HOST: a loopback address (default 127.0.0.1); the suite gives each run its own, so that two runs on
// one machine never contend for port 80.
const HOST = process.env.STANDIN_HOST ?? "127.0.0.1";
if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(HOST)) throw new Error(`STANDIN_HOST must be a 127.x.y.z address: ${HOST}`);
const PORT = Number(process.env.STANDIN_PORT ?? 80);
const ORIGIN = PORT === 80 ? `http://${HOST}` : `http://${HOST}:${PORT}`;
const JOB_MS = Number(process.env.STANDIN_JOB_MS ?? 300);
const BASE_NETWORK = "eip155:8453";
const BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAYEE = "0x919c2692DC6B80c70D2A3829896aC1EE59c55Acb";
const TOKEN_TTL_MS = 300_000;
const MAX_UPLOAD_BYTES = Number(process.env.STANDIN_MAX_UPLOAD_BYTES ?? 8 * 1024 * 1024);
const EDIT_PRICES = { "0.5 MP": "0.03", "1 MP": "0.045", "2 MP": "0.06" };
const IMAGE_TYPES = ["image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp"];

confineFetchToLoopback();
const usdc = new InMemoryUsdc({ address: BASE_USDC, chainId: 8453, defaultBalance: 100_000_000 });
installLocalFacilitator(usdc, BASE_NETWORK);

// createRouter reads the CDP keys from process.env itself, so the settings go there.
Object.assign(process.env, {
    BASE_URL: ORIGIN,
    EVM_PAYEE_ADDRESS: PAYEE,
    // Presence switches x402 on; the facilitator they would authenticate to is replaced (local-chain.mjs).
    CDP_API_KEY_ID: "offline-placeholder",
    CDP_API_KEY_SECRET: "offline-placeholder",
    MPP_SECRET_KEY: "stand-in-mpp-secret-of-at-least-32-bytes",
    MPP_CURRENCY: "0x20C000000000000000000000b9537d11c60E8b50",
    TEMPO_RPC_URL: `${ORIGIN}/_standin/no-tempo`,
});
const router = createRouterFromEnv({
  title: "StableStudio",
  description: "Image and video generation, paid per call (conformance stand-in).",
  guidance: "Upload with POST /api/upload, edit with POST /api/generate/flux-2-pro/edit, poll GET /api/jobs/{id}.",
  serviceName: "StableStudio",
});

const uploads = new Map(); // uploadId -> {wallet, pathname, contentType, token, expiresAt, confirmed}
const tokens = new Map(); // client token -> uploadId
const blobs = new Map(); // pathname -> {data, contentType, etag}
const jobs = new Map(); // jobId -> {wallet, type, input, createdAt}
// A test may make the edit's price function answer another price (a deployment that raised its price).
let editPriceOverride = null;

const uploadBody = z.object({
  filename: z.string().min(1).max(255).regex(/^[^/\\]+$/, "no slashes"),
  contentType: z.enum(IMAGE_TYPES),
  size: z.number().int().positive().max(MAX_UPLOAD_BYTES).optional(),
});

const editBody = z.object({
  prompt: z.string().min(1).max(10_000),
  images: z.array(z.url()).min(1).max(8),
  aspect_ratio: z.enum(["1:1", "16:9", "9:16", "3:2", "2:3", "4:5", "5:4", "4:3", "3:4"]).default("1:1"),
  resolution: z.enum(["0.5 MP", "1 MP", "2 MP"]).default("1 MP"),
  output_format: z.enum(["webp", "jpg", "png"]).default("webp"),
  output_quality: z.number().int().min(0).max(100).default(80),
  safety_tolerance: z.number().int().min(1).max(5).default(2),
  prompt_upsampling: z.boolean().default(false),
  seed: z.number().int().optional(),
});

router
  .route({ path: "upload", method: "POST" })
  .description("Upload a file")
  .paid("0.01")
  .body(uploadBody)
  .handler(async ({ body, wallet }) => {
    const uploadId = randomUUID();
    const pathname = `uploads/${uploadId}/${body.filename}`;
    const expiresAt = Date.now() + TOKEN_TTL_MS;
    // Vercel Blob's shape: vercel_blob_client_<store>_<b64("<hmac hex>.<b64(json payload)>")>.
    const payload = Buffer.from(JSON.stringify({ pathname, validUntil: expiresAt })).toString("base64");
    const signed = `${randomBytes(32).toString("hex")}.${payload}`;
    const token = `vercel_blob_client_standin${randomBytes(4).toString("hex")}_${Buffer.from(signed).toString("base64")}`;
    uploads.set(uploadId, { wallet, pathname, contentType: body.contentType, expiresAt, confirmed: false });
    tokens.set(token, uploadId);
    return { uploadId, clientToken: token, pathname, expiresAt: new Date(expiresAt).toISOString() };
  });

router
  .route({ path: "generate/flux-2-pro/edit", method: "POST" })
  .description("flux-2-pro - edit")
  .paid((body) => editPriceOverride ?? EDIT_PRICES[body.resolution], { maxPrice: "10" })
  .body(editBody)
  .handler(async ({ body, wallet }) => {
    const jobId = randomUUID().replaceAll("-", "").slice(0, 25);
    jobs.set(jobId, { wallet: wallet?.toLowerCase(), type: "flux-2-pro-edit", input: body, createdAt: Date.now() });
    return { type: "flux-2-pro-edit", jobId, status: "pending", success: true };
  });

router
  .route({ path: "upload/confirm", method: "POST" })
  .description("Confirm an upload")
  .siwx()
  .body(z.object({ uploadId: z.string(), blobUrl: z.string() }))
  .handler(async ({ body, wallet }) => {
    const upload = uploads.get(body.uploadId);
    if (!upload || upload.wallet?.toLowerCase() !== wallet.toLowerCase()) {
      return Response.json({ error: "upload not found" }, { status: 404 });
    }
    const blob = blobs.get(upload.pathname);
    if (!blob || body.blobUrl !== `${ORIGIN}/blobs/${upload.pathname}`) {
      return Response.json({ error: "blob not uploaded" }, { status: 400 });
    }
    upload.confirmed = true;
    return {
      success: true,
      upload: { id: body.uploadId, blobUrl: body.blobUrl, pathname: upload.pathname, contentType: blob.contentType, size: blob.data.length },
    };
  });

router
  .route({ path: "jobs/{id}", method: "GET" })
  .description("Get a job")
  .siwx()
  .handler(async ({ params, wallet }) => {
    const job = jobs.get(params.id);
    if (!job || job.wallet !== wallet.toLowerCase()) {
      return Response.json({ error: "job not found" }, { status: 404 });
    }
    const done = Date.now() - job.createdAt >= JOB_MS;
    const view = {
      id: params.id,
      jobId: params.id,
      type: job.type,
      status: done ? "complete" : "pending",
      input: job.input,
      createdAt: new Date(job.createdAt).toISOString(),
      updatedAt: new Date(done ? job.createdAt + JOB_MS : job.createdAt).toISOString(),
    };
    if (done) view.result = { imageUrl: `${ORIGIN}/blobs/generated/${params.id}` };
    return view;
  });

const app = new Hono();

// The Vercel Blob stand-in: PUT ?pathname=... with the client token the paid upload handed out.
const putBlob = async (c) => {
  const token = (c.req.header("authorization") ?? "").replace(/^Bearer\s+/, "");
  const uploadId = tokens.get(token);
  const upload = uploadId && uploads.get(uploadId);
  const pathname = c.req.query("pathname");
  if (!upload || upload.pathname !== pathname || upload.expiresAt < Date.now()) {
    return c.json({ error: { code: "forbidden", message: "Access denied, please provide a valid token for this resource." } }, 403);
  }
  const contentType = c.req.header("x-content-type") ?? c.req.header("content-type");
  if (contentType !== upload.contentType) {
    return c.json({ error: { code: "forbidden", message: "Content type mismatch." } }, 403);
  }
  const data = Buffer.from(await c.req.arrayBuffer());
  const etag = `"${createHash("sha256").update(data).digest("hex").slice(0, 32)}"`;
  blobs.set(pathname, { data, contentType, etag });
  const url = `${ORIGIN}/blobs/${pathname}`;
  return c.json({
    url,
    downloadUrl: `${url}?download=1`,
    pathname,
    contentType,
    contentDisposition: `inline; filename="${pathname.split("/").pop()}"`,
    etag,
  });
};
app.put("/api/blob", putBlob);
app.put("/api/blob/", putBlob);

// A result is the first input image as uploaded: the stand-in checks the protocol, not the model.
app.get("/blobs/generated/:id", (c) => {
  const job = jobs.get(c.req.param("id"));
  const source = job && blobs.get(new URL(job.input.images[0]).pathname.replace(/^\/blobs\//, ""));
  if (!source || Date.now() - job.createdAt < JOB_MS) return c.json({ error: "not found" }, 404);
  return new Response(source.data, { headers: { "content-type": source.contentType } });
});
app.get("/blobs/*", (c) => {
  const blob = blobs.get(c.req.path.replace(/^\/blobs\//, ""));
  if (!blob) return c.json({ error: "not found" }, 404);
  return new Response(blob.data, { headers: { "content-type": blob.contentType, etag: blob.etag } });
});

// For the tests: what moved on the in-memory chain (balances in atomic USDC, used nonces, transfers).
app.get("/_standin/chain", (c) =>
  c.json({
    transfers: usdc.transfers,
    usedNonces: [...usdc.usedNonces],
    balances: Object.fromEntries([...usdc.balances].map(([k, v]) => [k, v.toString()])),
  }),
);
// A Base JSON-RPC over the same token, for a client resolving a lost reply: the latest block (stamped now) and
// eth_call of authorizationState(address,bytes32) and balanceOf(address), answered from the in-memory chain.
app.post("/_standin/rpc", async (c) => {
  const call = await c.req.json();
  const reply = (fields) => c.json({ jsonrpc: "2.0", id: call.id, ...fields });
  const word = (value) => "0x" + BigInt(value).toString(16).padStart(64, "0");
  if (call.method === "eth_getBlockByNumber") {
    return reply({ result: { number: "0x1", timestamp: "0x" + Math.floor(Date.now() / 1000).toString(16) } });
  }
  if (call.method === "eth_call") {
    const data = String(call.params?.[0]?.data ?? "");
    if (data.startsWith("0xe94a0102") && data.length === 138) {
      return reply({ result: word(usdc.authorizationState("0x" + data.slice(34, 74), "0x" + data.slice(74)) ? 1 : 0) });
    }
    if (data.startsWith("0x70a08231") && data.length === 74) {
      return reply({ result: word(usdc.balanceOf("0x" + data.slice(34, 74))) });
    }
  }
  return reply({ error: { code: -32601, message: `not served: ${call.method}` } });
});
app.get("/_standin/health", (c) => c.json({ ok: true }));
app.put("/_standin/edit-price", async (c) => {
  editPriceOverride = (await c.req.json()).price ?? null;
  return c.json({ price: editPriceOverride });
});

app.all("*", (c) => router.fetch(c.req.raw));

serve({ fetch: app.fetch, hostname: HOST, port: PORT }, (info) => {
  console.log(`router stand-in listening on ${ORIGIN} (port ${info.port})`);
});
