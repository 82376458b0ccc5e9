# Stages 1-2 store: Postgres 16, Multi-AZ, encrypted, private, daily snapshots kept 30 days
# plus continuous WAL (point-in-time recovery) - the seeds' backup strategy.

resource "aws_db_subnet_group" "this" {
  count      = local.uses_postgres ? 1 : 0
  name       = "${local.prefix}-postgres"
  subnet_ids = aws_subnet.data[*].id
  tags       = local.tags
}

resource "aws_db_instance" "postgres" {
  count                           = local.uses_postgres ? 1 : 0
  identifier                      = "${var.name}-${var.role}-postgres"
  engine                          = "postgres"
  engine_version                  = "16"
  instance_class                  = var.postgres_instance_class
  allocated_storage               = var.postgres_storage_gb
  max_allocated_storage           = var.postgres_storage_gb * 4
  storage_type                    = "gp3"
  storage_encrypted               = true
  kms_key_id                      = aws_kms_key.data.arn
  db_name                         = "evpipe"
  username                        = "evpipe"
  manage_master_user_password     = true
  master_user_secret_kms_key_id   = aws_kms_key.data.arn
  multi_az                        = true
  publicly_accessible             = false
  db_subnet_group_name            = aws_db_subnet_group.this[0].name
  vpc_security_group_ids          = [aws_security_group.data.id]
  backup_retention_period         = 30
  deletion_protection             = true
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-${var.role}-postgres-final"
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.data.arn
  enabled_cloudwatch_logs_exports = ["postgresql"]
  tags                            = local.tags
}
