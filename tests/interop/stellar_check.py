#!/usr/bin/env python3
"""Decodes a file of Stellar transaction envelopes (one base64 XDR envelope a line, as
`peercdn ledger export --stellar` writes them) with the Stellar SDK (stellar-sdk from PyPI) and
prints what they say as one JSON document: per envelope the source account, sequence number,
fee, memo hash, each payment's destination, asset and amount, and how many signatures verify
with the source account's key. The test compares that with the ledger; nothing here touches a
network.

Usage: stellar_check.py FILE [public|testnet]
"""
import json
import sys

from stellar_sdk import Keypair, Network, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError
from stellar_sdk.operation import Payment


def main():
    path = sys.argv[1]
    network = sys.argv[2] if len(sys.argv) > 2 else "public"
    passphrase = (
        Network.PUBLIC_NETWORK_PASSPHRASE
        if network == "public"
        else Network.TESTNET_NETWORK_PASSPHRASE
    )
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            env = TransactionEnvelope.from_xdr(line, passphrase)
            tx = env.transaction
            source = tx.source.account_id
            key = Keypair.from_public_key(source)
            valid = 0
            for sig in env.signatures:
                try:
                    key.verify(env.hash(), sig.signature)
                    valid += 1
                except BadSignatureError:
                    pass
            payments = []
            for op in tx.operations:
                if not isinstance(op, Payment):
                    raise SystemExit(f"not a payment: {op!r}")
                payments.append(
                    {
                        "destination": op.destination.account_id,
                        "native": op.asset.is_native(),
                        "amount": str(op.amount),
                        "source": op.source.account_id if op.source else None,
                    }
                )
            memo = tx.memo
            out.append(
                {
                    "source": source,
                    "sequence": tx.sequence,
                    "fee": tx.fee,
                    "memo_hash": memo.memo_hash.hex() if hasattr(memo, "memo_hash") else None,
                    "payments": payments,
                    "signatures": len(env.signatures),
                    "valid_signatures": valid,
                }
            )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
