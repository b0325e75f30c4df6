// The official x402 facilitator (@x402/core + @x402/evm's exact scheme), run in this process over an
// in-memory EIP-3009 token, plugged in at the router's one facilitator seam.
//
// @agentcash/router 1.20.0 has no setting for a custom EVM facilitator: it builds an
// `HTTPFacilitatorClient` from `@coinbase/x402`'s config, which calls api.cdp.coinbase.com. CI has no
// internet, so `installLocalFacilitator` replaces that class's verify/settle/getSupported (the prototype
// the router's dynamic import resolves to) with calls into a real `x402Facilitator`. Everything the
// facilitator checks runs unmodified (signature, recipient, amount, time window, simulation, nonce
// diagnosis); only the chain is ours: `InMemoryUsdc` answers the same contract calls FiatTokenV2 would,
// with FiatTokenV2's revert texts, so the official error codes come out (e.g.
// `invalid_exact_evm_nonce_already_used` for a replay).
import { HTTPFacilitatorClient } from "@x402/core/server";
import { x402Facilitator } from "@x402/core/facilitator";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import {
  decodeFunctionData,
  encodeFunctionResult,
  getAddress,
  keccak256,
  toHex,
  verifyTypedData,
} from "viem";

const ERC20_ABI = [
  {
    type: "function",
    name: "transferWithAuthorization",
    stateMutability: "nonpayable",
    inputs: [
      { name: "from", type: "address" },
      { name: "to", type: "address" },
      { name: "value", type: "uint256" },
      { name: "validAfter", type: "uint256" },
      { name: "validBefore", type: "uint256" },
      { name: "nonce", type: "bytes32" },
      { name: "v", type: "uint8" },
      { name: "r", type: "bytes32" },
      { name: "s", type: "bytes32" },
    ],
    outputs: [],
  },
  { type: "function", name: "balanceOf", stateMutability: "view", inputs: [{ name: "a", type: "address" }], outputs: [{ type: "uint256" }] },
  { type: "function", name: "name", stateMutability: "view", inputs: [], outputs: [{ type: "string" }] },
  { type: "function", name: "version", stateMutability: "view", inputs: [], outputs: [{ type: "string" }] },
  {
    type: "function",
    name: "authorizationState",
    stateMutability: "view",
    inputs: [{ name: "a", type: "address" }, { name: "n", type: "bytes32" }],
    outputs: [{ type: "bool" }],
  },
];

/** USDC on Base as far as EIP-3009 goes: balances, used nonces, FiatTokenV2's checks and revert texts. */
export class InMemoryUsdc {
  constructor({ address, chainId, defaultBalance }) {
    this.address = getAddress(address);
    this.chainId = chainId;
    this.defaultBalance = BigInt(defaultBalance);
    this.balances = new Map();
    this.usedNonces = new Set();
    this.transfers = [];
  }

  balanceOf(account) {
    return this.balances.get(account.toLowerCase()) ?? this.defaultBalance;
  }

  authorizationState(from, nonce) {
    return this.usedNonces.has(`${from.toLowerCase()}:${nonce.toLowerCase()}`);
  }

  /** Checks what FiatTokenV2 checks; `apply` moves the money (a mined transaction), else it is a simulation. */
  async transferWithAuthorization(args, apply) {
    const [from, to, value, validAfter, validBefore, nonce, v, r, s] = args;
    const now = BigInt(Math.floor(Date.now() / 1000));
    if (now <= validAfter) throw new Error("FiatTokenV2: authorization is not yet valid");
    if (now >= validBefore) throw new Error("FiatTokenV2: authorization is expired");
    if (this.authorizationState(from, nonce)) throw new Error("FiatTokenV2: authorization is used or canceled");
    const signature = `${r}${s.slice(2)}${Number(v).toString(16).padStart(2, "0")}`;
    const signed = await verifyTypedData({
      address: from,
      domain: { name: "USD Coin", version: "2", chainId: this.chainId, verifyingContract: this.address },
      types: {
        TransferWithAuthorization: [
          { name: "from", type: "address" },
          { name: "to", type: "address" },
          { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" },
          { name: "validBefore", type: "uint256" },
          { name: "nonce", type: "bytes32" },
        ],
      },
      primaryType: "TransferWithAuthorization",
      message: { from, to, value, validAfter, validBefore, nonce },
      signature,
    });
    if (!signed) throw new Error("FiatTokenV2: invalid signature");
    if (this.balanceOf(from) < value) throw new Error("ERC20: transfer amount exceeds balance");
    if (!apply) return;
    this.usedNonces.add(`${from.toLowerCase()}:${nonce.toLowerCase()}`);
    this.balances.set(from.toLowerCase(), this.balanceOf(from) - value);
    this.balances.set(to.toLowerCase(), this.balanceOf(to) + value);
    this.transfers.push({ from, to, value: value.toString(), nonce });
  }

  /** One view call by name (the diagnosis the facilitator runs after a failed simulation). */
  view(functionName, args) {
    if (functionName === "balanceOf") return this.balanceOf(args[0]);
    if (functionName === "name") return "USD Coin";
    if (functionName === "version") return "2";
    if (functionName === "authorizationState") return this.authorizationState(args[0], args[1]);
    throw new Error(`InMemoryUsdc has no view ${functionName}`);
  }
}

/** The FacilitatorEvmSigner the official exact scheme needs, over `token` (the only contract on this chain). */
function facilitatorSigner(token) {
  const facilitatorAddress = "0x000000000000000000000000000000000000fac1";
  let mined = 0;
  const call = async (address, functionName, args, apply) => {
    if (getAddress(address) !== token.address) throw new Error(`no contract at ${address}`);
    if (functionName === "transferWithAuthorization") return token.transferWithAuthorization(args, apply);
    return token.view(functionName, args ?? []);
  };
  return {
    getAddresses: () => [facilitatorAddress],
    async readContract({ address, functionName, args }) {
      if (functionName !== "tryAggregate") return call(address, functionName, args, false);
      // Multicall3: decode each call against the token's ABI, answer it, encode the result.
      const [, calls] = args;
      return Promise.all(
        calls.map(async ({ target, callData }) => {
          try {
            const decoded = decodeFunctionData({ abi: ERC20_ABI, data: callData });
            const result = await call(target, decoded.functionName, decoded.args, false);
            const returnData =
              decoded.functionName === "transferWithAuthorization"
                ? "0x"
                : encodeFunctionResult({ abi: ERC20_ABI, functionName: decoded.functionName, result });
            return { success: true, returnData };
          } catch {
            return { success: false, returnData: "0x" };
          }
        }),
      );
    },
    verifyTypedData: (args) => verifyTypedData(args),
    async writeContract({ address, functionName, args }) {
      await call(address, functionName, args, true);
      mined += 1;
      return keccak256(toHex(`standin-tx-${mined}-${Date.now()}`));
    },
    async sendTransaction() {
      throw new Error("the in-memory chain runs no arbitrary transactions");
    },
    // Logs are left out: the facilitator checks a receipt's Transfer event only when logs are present.
    waitForTransactionReceipt: async () => ({ status: "success" }),
    getCode: async ({ address }) => (getAddress(address) === token.address ? "0x6080" : "0x"),
  };
}

/** Route every HTTPFacilitatorClient (the router's facilitator) to an official facilitator over `token`. */
export function installLocalFacilitator(token, network) {
  const facilitator = new x402Facilitator();
  registerExactEvmScheme(facilitator, { signer: facilitatorSigner(token), networks: network });
  HTTPFacilitatorClient.prototype.verify = (payload, requirements) => facilitator.verify(payload, requirements);
  HTTPFacilitatorClient.prototype.settle = (payload, requirements) => facilitator.settle(payload, requirements);
  HTTPFacilitatorClient.prototype.getSupported = async () => facilitator.getSupported();
  return facilitator;
}

/** Refuse every fetch that leaves loopback: the router phones api.cdp.coinbase.com at start, CI must not. */
export function confineFetchToLoopback() {
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    if (!url.hostname.startsWith("127.") && url.hostname !== "localhost") {
      return Promise.reject(new Error(`offline stand-in: no fetch to ${url.host}`));
    }
    return realFetch(input, init);
  };
}
