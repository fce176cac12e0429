from infra.components.network import Network, NetworkArgs
from infra.config.platform import NetworkConfig

from .conftest import PROD, register

NET = "gcp:compute/network:Network"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
CONNECTION = "gcp:servicenetworking/connection:Connection"


def build(**config):
    holder = {}

    def go():
        net = holder["net"] = Network("network", NetworkArgs(PROD, NetworkConfig.model_validate(config)))
        return {"peered": net.peered_range, "name": net.name, "subnet": net.subnet_name}

    return register(go), holder


def test_vpc_subnet_and_private_services_access():
    reg, _ = build(subnetCidr="10.8.0.0/22", privateServicesCidr="10.60.0.0/16")
    vpc = reg.one(NET)
    assert (vpc["name"], vpc["autoCreateSubnetworks"], vpc["project"]) == ("netra-prod-vpc", False, "netra-test")
    subnet = reg.one(SUBNET)
    assert (subnet["ipCidrRange"], subnet["region"], subnet["network"]) == ("10.8.0.0/22", "us-central1", "vpc-id")
    psa = reg.one(ADDRESS)
    assert (psa["address"], psa["prefixLength"], psa["purpose"]) == ("10.60.0.0", 16, "VPC_PEERING")
    conn = reg.one(CONNECTION)
    assert conn["reservedPeeringRanges"] == [psa["name"]] and conn["deletionPolicy"] == "ABANDON"


def test_peered_range_is_read_from_the_peering_so_users_wait_for_it():
    reg, _ = build()
    assert reg.outputs["peered"] == "netra-prod-private-services"
    assert (reg.outputs["name"], reg.outputs["subnet"]) == ("netra-prod-vpc", "netra-prod-run-egress")
