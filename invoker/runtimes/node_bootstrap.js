// kambda's built-in Node.js runtime: a Lambda Runtime API client, modelled on AWS's aws-lambda-ric.
// Runs inside each execution environment as `node node_bootstrap.js`; Node's standard library only.
"use strict";

const http = require("http");
const path = require("path");
const fs = require("fs");
const util = require("util");
const { pathToFileURL } = require("url");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const BASE = "/2018-06-01/runtime";
let currentRequestId = "";

function request(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: PORT, method, path: urlPath, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// console.* in AWS's format: TIMESTAMP\tREQUEST_ID\tLEVEL\tmessage
function patchConsole() {
  const write = (level, stream) => (...args) => {
    const text = util.format(...args).replace(/\n/g, "\r");
    stream.write(`${new Date().toISOString()}\t${currentRequestId || "undefined"}\t${level}\t${text}\n`);
  };
  console.log = write("INFO", process.stdout);
  console.info = write("INFO", process.stdout);
  console.warn = write("WARN", process.stdout);
  console.error = write("ERROR", process.stdout);
  console.debug = write("DEBUG", process.stdout);
  console.trace = write("TRACE", process.stdout);
}

function errorBody(err, fallbackType) {
  const isError = err instanceof Error;
  const type = isError ? (err.name && err.name !== "Error" ? err.name : err.constructor.name) : fallbackType;
  return {
    errorType: type || fallbackType,
    errorMessage: isError ? err.message : typeof err === "string" ? err : JSON.stringify(err),
    trace: isError && err.stack ? err.stack.split("\n") : [],
  };
}

class FaultError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.faultType = type;
    if (cause && cause.stack) this.stack = `${type}: ${message}\n${cause.stack}`;
  }
}

async function loadHandler() {
  const handlerString = process.env._HANDLER || "";
  const taskRoot = process.env.LAMBDA_TASK_ROOT;
  const dot = handlerString.lastIndexOf(".");
  if (dot < 1) throw new FaultError("Runtime.MalformedHandlerName", `Bad handler ${handlerString}`);
  const moduleName = handlerString.slice(0, dot);
  const functionPath = handlerString.slice(dot + 1).split(".");
  const base = path.resolve(taskRoot, moduleName);
  let mod;
  try {
    if (fs.existsSync(base + ".mjs")) {
      mod = await import(pathToFileURL(base + ".mjs").href);
    } else if (fs.existsSync(base + ".cjs")) {
      mod = require(base + ".cjs");
    } else {
      mod = require(base);
    }
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new FaultError("Runtime.UserCodeSyntaxError", `${err.name}: ${err.message}`, err);
    }
    if (err && err.code === "MODULE_NOT_FOUND" && String(err.message).split("\n")[0].includes(base)) {
      throw new FaultError("Runtime.ImportModuleError", `Error: Cannot find module '${moduleName}'`, err);
    }
    if (err && (err.code === "MODULE_NOT_FOUND" || err.code === "ERR_MODULE_NOT_FOUND")) {
      throw new FaultError("Runtime.ImportModuleError", `Error: ${err.message}`, err);
    }
    throw err;
  }
  let fn = mod;
  for (const part of functionPath) fn = fn == null ? undefined : fn[part];
  if (typeof fn !== "function") {
    throw new FaultError("Runtime.HandlerNotFound", `${handlerString} is undefined or not exported`);
  }
  return fn;
}

function makeContext(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const parse = (v) => (v ? JSON.parse(v) : undefined);
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parse(headers["lambda-runtime-client-context"]),
    identity: parse(headers["lambda-runtime-cognito-identity"]),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function invokeHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (err) => callback(err || new Error("handled"));
    try {
      const returned = handler(event, context, callback);
      if (returned && typeof returned.then === "function") returned.then((r) => callback(null, r), callback);
      else if (handler.length < 3) callback(null, returned);
    } catch (err) {
      callback(err);
    }
  });
}

async function postError(urlPath, body, type) {
  await request("POST", urlPath, JSON.stringify(body), {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": type,
  });
}

async function main() {
  patchConsole();
  let handler;
  try {
    handler = await loadHandler();
  } catch (err) {
    const type = err.faultType || "Runtime.UnhandledPromiseRejection";
    const body = errorBody(err, type);
    body.errorType = err.faultType || body.errorType;
    console.error(JSON.stringify(body));
    await postError(`${BASE}/init/error`, body, body.errorType);
    process.exit(1);
  }
  for (;;) {
    const next = await request("GET", `${BASE}/invocation/next`);
    if (next.status !== 200) {
      process.stderr.write(`runtime API answered ${next.status} on /next\n`);
      process.exit(1);
    }
    const requestId = next.headers["lambda-runtime-aws-request-id"];
    currentRequestId = requestId;
    if (next.headers["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"];
    else delete process.env._X_AMZN_TRACE_ID;
    let event;
    try {
      event = JSON.parse(next.body.toString("utf8") || "null");
    } catch (err) {
      await postError(`${BASE}/invocation/${requestId}/error`, errorBody(err, "Runtime.UnmarshalError"),
        "Runtime.UnmarshalError");
      continue;
    }
    try {
      const result = await invokeHandler(handler, event, makeContext(next.headers));
      let payload;
      try {
        payload = JSON.stringify(result === undefined ? null : result);
      } catch (err) {
        const body = { errorType: "Runtime.MarshalError", errorMessage: `Unable to stringify response body`, trace: [] };
        await postError(`${BASE}/invocation/${requestId}/error`, body, body.errorType);
        continue;
      }
      await request("POST", `${BASE}/invocation/${requestId}/response`, payload, {
        "Content-Type": "application/json",
      });
    } catch (err) {
      const body = errorBody(err, "Error");
      console.error(`Invoke Error \t${JSON.stringify(body)}`);
      await postError(`${BASE}/invocation/${requestId}/error`, body, body.errorType);
    }
  }
}

main().catch((err) => {
  process.stderr.write(`kambda node runtime failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
