# The seeds' multi-region topology: the full stack in the primary region, the same module in
# the DR region (smaller, warm standby), the archive bucket replicated primary -> DR so the
# DR region can rebuild ClickHouse with `evpipe replay archive`, and images replicated.

provider "aws" {
  region = var.primary_region
}

provider "aws" {
  alias  = "dr"
  region = var.dr_region
}

module "primary" {
  source          = "./modules/region"
  name            = var.name
  region          = var.primary_region
  role            = "primary"
  stage           = var.stage
  vpc_cidr        = "10.0.0.0/16"
  certificate_arn = var.primary_certificate_arn
}

module "dr" {
  source    = "./modules/region"
  providers = { aws = aws.dr }
  name      = var.name
  region    = var.dr_region
  role      = "dr"
  stage     = var.stage
  # Same layout as the primary, so the Kubernetes NetworkPolicies apply unchanged; the two
  # VPCs are never peered, so the overlap is harmless.
  vpc_cidr              = "10.0.0.0/16"
  certificate_arn       = var.dr_certificate_arn
  create_ecr_repository = false
  gateway_nodes         = { min = 2, desired = 2, max = 50 }
  consumer_nodes        = { min = 1, desired = 1, max = 20 }
}

# ---- archive replication (RPO for the archive: S3 RTC replicates 99.99% within 15 minutes) ----

resource "aws_iam_role" "replication" {
  name = "${var.name}-archive-replication"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "replication" {
  name = "replicate-archive"
  role = aws_iam_role.replication.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
        Resource = [module.primary.archive_bucket_arn]
      },
      {
        Effect   = "Allow"
        Action   = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
        Resource = ["${module.primary.archive_bucket_arn}/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
        Resource = ["${module.dr.archive_bucket_arn}/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [module.primary.kms_key_arn]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Encrypt"]
        Resource = [module.dr.kms_key_arn]
      },
    ]
  })
}

resource "aws_s3_bucket_replication_configuration" "archive" {
  role   = aws_iam_role.replication.arn
  bucket = module.primary.archive_bucket
  rule {
    id     = "archive-to-dr"
    status = "Enabled"
    filter {}
    delete_marker_replication {
      status = "Disabled"
    }
    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = module.dr.archive_bucket_arn
      storage_class = "STANDARD_IA"
      encryption_configuration {
        replica_kms_key_id = module.dr.kms_key_arn
      }
      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }
      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }
}

# ---- images: pushed once to the primary, replicated to the DR region ----

data "aws_caller_identity" "current" {}

resource "aws_ecr_replication_configuration" "images" {
  replication_configuration {
    rule {
      destination {
        region      = var.dr_region
        registry_id = data.aws_caller_identity.current.account_id
      }
    }
  }
}
