# One region of the seeds' AWS topology. Instantiate it once per region: the primary and the
# DR region differ only in `region`, `role` and sizes (see ../../main.tf).

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  prefix = "${var.name}-${var.region}"
  azs    = slice(data.aws_availability_zones.available.names, 0, 3)
  tags   = merge({ "app.kubernetes.io/part-of" = "evpipe", "evpipe/role" = var.role }, var.tags)

  uses_postgres = var.stage <= 2
  uses_redis    = var.stage == 2
  uses_kafka    = var.stage == 3
}

resource "aws_kms_key" "data" {
  description             = "${local.prefix}: encryption at rest for the archive, MSK, RDS, ElastiCache, EKS secrets, ECR"
  deletion_window_in_days = 30
  enable_key_rotation     = true
  tags                    = local.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
