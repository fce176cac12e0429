"""The bootstrap program (bootstrap/): what a fresh GCP project needs once before the main stack's first
`pulumi up`, run by a person with their own credentials: the Pulumi state bucket, the KMS key of the
stacks' `gcpkms://` secrets provider, the Artifact Registry repository, the CI identities (deploy, gate,
preview) with the roles the main program's resource types need, and GitHub's Workload Identity pool and
provider. `python -m infra bootstrap --stack S` plans it offline with the main stack's mocks and recorder."""
