"""Grafana behind IAP accepts only a token IAP signed for its own backend service (issue 21 item 3).

Grafana itself cannot run here, so `GrafanaJwt` mirrors its JWT auth rules as written in grafana/grafana
pkg/services/auth/jwt (auth.go `Verify`, validation.go `initClaimExpectations` / `validateClaims`) and the
go-jose v4 `Claims.Validate` it calls, and pkg/setting's `$__env{VAR}` expansion that runs after the GF_*
overrides (expanders.go, setting.go `loadConfiguration`):

- only ES256 compact tokens (`jwt.ParseSigned(token, [ES256])`), '=' padding stripped first;
- the key is looked up by the header's `kid` in the JWK set; no key -> refused; signature over header.payload;
- claim types: iss/sub strings, aud a string or a list of strings, exp/nbf/iat numbers (null skipped);
- `iss` and `sub` exact, `aud`: at least one expected audience among the token's (AnyAudience);
- nbf / exp / iat with go-jose's default leeway of one minute;
- every other expected claim present and deep-equal.

The expectations are the ones the plan renders: GF_AUTH_JWT_EXPECT_CLAIMS from the Grafana revision, with
$__env{IAP_AUDIENCE} expanded to the audience the edge stores in Secret Manager. Tokens are signed with a
local ES256 key standing in for IAP's.
"""
from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from infra.plan.engine import SECRET_SIG, SIG_KEY

LEEWAY_S = 60  # go-jose jwt.DefaultLeeway
EXPANDER = re.compile(r"\$(|__\w+){([^}]+)}")  # pkg/setting/expanders.go


class Refused(Exception):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def expand_env(value: str, env: dict[str, str]) -> str:
    """Grafana's env expander: each `$__env{VAR}` / `${VAR}` match replaced by the variable ("" if unset)."""
    for prefix, name in EXPANDER.findall(value):
        if prefix in ("", "__env"):
            value = value.replace(f"${prefix}{{{name}}}", env.get(name, ""), 1)
    return value


class GrafanaJwt:
    def __init__(self, expect_claims: str, jwks: dict):
        expect = json.loads(expect_claims)
        self.iss = self.sub = None
        self.aud: list[str] = []
        for key in ("iss", "sub"):
            if key in expect:
                if not isinstance(expect[key], str):
                    raise ValueError(f"{key!r} expectation has invalid type, string expected")
                setattr(self, key, expect.pop(key))
        if "aud" in expect:
            aud = expect.pop("aud")
            if isinstance(aud, str):
                self.aud = [aud]
            elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
                self.aud = list(aud)
            else:
                raise ValueError("'aud' expectation has invalid type, array or string expected")
        self.other = expect
        self.keys = {k.get("kid"): k for k in jwks["keys"]}

    def verify(self, token: str, now: float) -> dict:
        token = token.replace("=", "")
        parts = token.split(".")
        if len(parts) != 3:
            raise Refused("not a compact JWS")
        header = json.loads(unb64url(parts[0]))
        if header.get("alg") != "ES256":
            raise Refused(f"unexpected signature algorithm {header.get('alg')!r}")
        jwk = self.keys.get(header.get("kid"))
        if jwk is None:
            raise Refused("no keys found")
        public = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64url(jwk["x"]), "big"),
                                               int.from_bytes(unb64url(jwk["y"]), "big"), ec.SECP256R1()).public_key()
        sig = unb64url(parts[2])
        if len(sig) != 64:
            raise Refused("bad signature length")
        try:
            public.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                          f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused("invalid signature") from None
        claims = json.loads(unb64url(parts[1]))
        self._validate(claims, now)
        return claims

    def _validate(self, claims: dict, now: float) -> None:
        for key in ("iss", "sub"):
            if key in claims and not isinstance(claims[key], str):
                raise Refused(f"{key!r} claim has invalid type")
        aud = claims.get("aud", [])
        aud = [aud] if isinstance(aud, str) else aud
        if not isinstance(aud, list) or not all(isinstance(a, str) for a in aud):
            raise Refused("'aud' claim has invalid type")
        times = {}
        for key in ("exp", "nbf", "iat"):
            value = claims.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise Refused(f"{key!r} claim has invalid type")
            times[key] = value
        if self.iss and self.iss != claims.get("iss", ""):
            raise Refused("invalid issuer")
        if self.sub and self.sub != claims.get("sub", ""):
            raise Refused("invalid subject")
        if self.aud and not any(a in aud for a in self.aud):
            raise Refused("invalid audience")
        if times["nbf"] is not None and now + LEEWAY_S < times["nbf"]:
            raise Refused("not valid yet")
        if times["exp"] is not None and now - LEEWAY_S > times["exp"]:
            raise Refused("expired")
        if times["iat"] is not None and now + LEEWAY_S < times["iat"]:
            raise Refused("issued in the future")
        for key, expected in self.other.items():
            if key not in claims:
                raise Refused(f"{key!r} claim is missing")
            if json.dumps(claims[key], sort_keys=True) != json.dumps(expected, sort_keys=True):
                raise Refused(f"{key!r} claim mismatch")


# ---------------------------------------------------------------- an IAP stand-in: a local ES256 key

class Signer:
    def __init__(self, kid: str):
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict:
        nums = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}

    def token(self, claims: dict, header: dict | None = None) -> str:
        head = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": self.kid, **(header or {})}).encode())
        body = b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
        return f"{head}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


IAP = Signer("iap-key-1")
NOW = 1_800_000_000


def iap_claims(audience: str, **changes) -> dict:
    claims = {"iss": "https://cloud.google.com/iap", "aud": audience, "sub": "accounts.google.com:1234567890",
              "email": "alice@netra.ai", "hd": "netra.ai", "iat": NOW - 30, "exp": NOW + 570}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


# ---------------------------------------------------------------- the rendered settings

def rendered(run) -> tuple[dict[str, str], str]:
    """(Grafana's env as its container starts, the audience the edge stored) from a plan run."""
    resources = run.resources
    svc = next(r for r in resources if r.type == "gcp:cloudrunv2/service:Service" and r.name == "grafana")
    envs = svc.inputs["template"]["containers"][0]["envs"]
    env = {e["name"]: e["value"] for e in envs if "value" in e}
    refs = {e["name"]: e["valueSource"]["secretKeyRef"]["secret"] for e in envs if "valueSource" in e}
    secret = next(r for r in resources if r.type == "gcp:secretmanager/secret:Secret"
                  and r.inputs["secretId"] == refs["IAP_AUDIENCE"])
    version = next(r for r in resources if r.type == "gcp:secretmanager/secretVersion:SecretVersion"
                   and secret.urn in r.dependencies)
    data = version.inputs["secretData"]
    assert data[SIG_KEY] == SECRET_SIG  # kept a Pulumi secret end to end
    return env, data["value"]


@pytest.fixture(scope="module")
def grafana(prod_run):
    env, audience = rendered(prod_run)
    assert env["GF_AUTH_JWT_ENABLED"] == "true" and env["GF_AUTH_JWT_HEADER_NAME"] == "X-Goog-Iap-Jwt-Assertion"
    assert env["GF_AUTH_JWT_JWK_SET_URL"] == "https://www.gstatic.com/iap/verify/public_key-jwk"
    expect = expand_env(env["GF_AUTH_JWT_EXPECT_CLAIMS"], {**env, "IAP_AUDIENCE": audience})
    return GrafanaJwt(expect, {"keys": [IAP.jwk()]}), audience


def test_the_audience_is_the_backend_services_and_not_in_the_template(prod_run, grafana):
    _, audience = grafana
    assert re.fullmatch(r"/projects/366603648421/global/backendServices/\d+", audience)
    svc = next(r for r in prod_run.resources if r.name == "grafana" and r.type.endswith("service:Service"))
    assert audience.rsplit("/", 1)[1] not in json.dumps(svc.inputs)  # the id never enters the revision


def test_a_token_iap_signed_for_this_backend_signs_in(grafana):
    verifier, audience = grafana
    assert verifier.verify(IAP.token(iap_claims(audience)), NOW)["email"] == "alice@netra.ai"
    assert verifier.verify(IAP.token(iap_claims([audience, "other"])), NOW)  # any-audience intersection


ATTACKER_AUD = "/projects/999999999999/global/backendServices/4242424242"


@pytest.mark.parametrize("claims,why", [
    (lambda a: iap_claims(ATTACKER_AUD), "invalid audience"),  # an IAP token minted for another app
    (lambda a: iap_claims(None, aud=None), "invalid audience"),
    (lambda a: iap_claims(a, iss="https://accounts.google.com"), "invalid issuer"),
    (lambda a: iap_claims(a, iss=None), "invalid issuer"),
    (lambda a: iap_claims(a, exp=NOW - LEEWAY_S - 1), "expired"),
    (lambda a: iap_claims(a, nbf=NOW + LEEWAY_S + 5), "not valid yet"),
    (lambda a: iap_claims(a, iat=NOW + LEEWAY_S + 5), "issued in the future"),
    (lambda a: iap_claims(a, exp="never"), "invalid type"),
], ids=["other-audience", "no-audience", "wrong-issuer", "no-issuer", "expired", "not-yet-valid", "future-iat",
        "exp-not-a-number"])
def test_forged_tokens_are_refused(grafana, claims, why):
    verifier, audience = grafana
    with pytest.raises(Refused, match=why):
        verifier.verify(IAP.token(claims(audience)), NOW)


def test_expiry_has_grafanas_one_minute_leeway(grafana):
    verifier, audience = grafana
    assert verifier.verify(IAP.token(iap_claims(audience, exp=NOW - LEEWAY_S + 1)), NOW)


def test_signatures_keys_and_algorithms_are_checked(grafana):
    verifier, audience = grafana
    good = IAP.token(iap_claims(audience))
    head, body, _ = good.split(".")
    with pytest.raises(Refused, match="invalid signature"):  # same kid, another key
        verifier.verify(Signer(IAP.kid).token(iap_claims(audience)), NOW)
    with pytest.raises(Refused, match="no keys found"):
        verifier.verify(Signer("unknown-kid").token(iap_claims(audience)), NOW)
    none = b64url(json.dumps({"alg": "none", "kid": IAP.kid}).encode())
    with pytest.raises(Refused, match="algorithm 'none'"):
        verifier.verify(f"{none}.{body}.", NOW)
    with pytest.raises(Refused, match="algorithm 'HS256'"):
        verifier.verify(IAP.token(iap_claims(audience), {"alg": "HS256"}), NOW)
    swapped = b64url(json.dumps(iap_claims(ATTACKER_AUD)).encode())
    with pytest.raises(Refused, match="invalid signature"):  # claims edited after signing
        verifier.verify(f"{head}.{swapped}.{good.split('.')[2]}", NOW)


def test_the_previous_issuer_only_settings_let_another_apps_token_in(grafana):
    """What issue 21 found: with only the issuer expected, a token for another backend signs in."""
    old = GrafanaJwt('{"iss": "https://cloud.google.com/iap"}', {"keys": [IAP.jwk()]})
    assert old.verify(IAP.token(iap_claims(ATTACKER_AUD)), NOW)


def test_an_unset_audience_refuses_every_token(prod_run):
    """Fail closed: if the audience secret is empty (or unreadable), no token matches the expectation."""
    env, audience = rendered(prod_run)
    verifier = GrafanaJwt(expand_env(env["GF_AUTH_JWT_EXPECT_CLAIMS"], env), {"keys": [IAP.jwk()]})
    assert verifier.aud == [""]
    with pytest.raises(Refused, match="invalid audience"):
        verifier.verify(IAP.token(iap_claims(audience)), NOW)


def test_grafanas_expander_semantics():
    assert expand_env('{"aud": "$__env{A}", "x": "${B}", "f": "$__file{/x}"}', {"A": "1", "B": "2"}) == \
        '{"aud": "1", "x": "2", "f": "$__file{/x}"}'


def test_a_new_backend_id_is_a_new_secret_version_not_a_new_revision(prod_run):
    """The audience lives in Secret Manager; the Grafana revision names only the secret, so it is the same
    revision whatever id the backend service gets."""
    from infra.components import grafana as grafana_mod

    svc = next(r for r in prod_run.resources if r.name == "grafana" and r.type.endswith("service:Service"))
    ref = [e for e in svc.inputs["template"]["containers"][0]["envs"] if e["name"] == grafana_mod.AUDIENCE_ENV]
    assert ref == [{"name": "IAP_AUDIENCE", "valueSource": {"secretKeyRef": {"secret": "prod-grafana-iap-audience",
                                                                              "version": "latest"}}}]
