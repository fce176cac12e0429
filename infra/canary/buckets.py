"""Histogram bucket layouts of Cloud Monitoring distributions (google.api.Distribution.BucketOptions).

A distribution with N finite buckets has N + 2 bucket counts: an underflow bucket (-inf, b0), the
finite buckets [b_{i-1}, b_i) and an overflow bucket [b_N, +inf). `bounds` below are the N + 1 finite
boundaries b_0 .. b_N; bucket i (0-based, of N + 2) covers [bounds[i-1], bounds[i]) with bounds[-1] =
-inf and bounds[N+1] = +inf.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BucketLayout:
    """Finite bucket boundaries (ascending). `kind`/`params` echo the proto for reporting."""

    bounds: tuple[float, ...]
    kind: str = "explicit"
    params: tuple[float, ...] = ()

    @property
    def num_buckets(self) -> int:
        """Number of bucket counts including underflow and overflow."""
        return len(self.bounds) + 1

    def lower_bound(self, index: int) -> float:
        """Lower boundary of bucket `index` (-inf for the underflow bucket)."""
        return float("-inf") if index == 0 else self.bounds[index - 1]

    def first_bucket_at_or_above(self, value: float) -> int:
        """Index of the first bucket whose lower bound is >= value (requests in it and above are
        certainly slower than `value`)."""
        for i, b in enumerate(self.bounds):
            if b >= value:
                return i + 1
        return self.num_buckets  # no such bucket: nothing is certainly slower

    @staticmethod
    def exponential(num_finite_buckets: int, growth_factor: float, scale: float) -> "BucketLayout":
        bounds = tuple(scale * growth_factor**i for i in range(num_finite_buckets + 1))
        return BucketLayout(bounds, "exponential", (num_finite_buckets, growth_factor, scale))

    @staticmethod
    def linear(num_finite_buckets: int, width: float, offset: float) -> "BucketLayout":
        bounds = tuple(offset + width * i for i in range(num_finite_buckets + 1))
        return BucketLayout(bounds, "linear", (num_finite_buckets, width, offset))

    @staticmethod
    def explicit(bounds) -> "BucketLayout":
        return BucketLayout(tuple(float(b) for b in bounds), "explicit", ())


# Cloud Run's run.googleapis.com/request_latencies (milliseconds): exponential buckets, growth 1.4,
# scale 1 ms. The gate always reads the layout from the API response; this constant is what the
# benchmark simulation and the local emulator use.
CLOUD_RUN_LATENCY = BucketLayout.exponential(num_finite_buckets=100, growth_factor=1.4, scale=1.0)


def layout_from_proto(bucket_options) -> BucketLayout | None:
    """BucketLayout from a google.api.Distribution.BucketOptions (proto-plus or protobuf message)."""
    if bucket_options is None:
        return None
    pb = getattr(bucket_options, "_pb", bucket_options)
    which = pb.WhichOneof("options")
    if which == "exponential_buckets":
        e = pb.exponential_buckets
        return BucketLayout.exponential(e.num_finite_buckets, e.growth_factor, e.scale)
    if which == "linear_buckets":
        lin = pb.linear_buckets
        return BucketLayout.linear(lin.num_finite_buckets, lin.width, lin.offset)
    if which == "explicit_buckets":
        return BucketLayout.explicit(pb.explicit_buckets.bounds)
    return None
