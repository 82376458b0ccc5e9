# Stage 2 buffer: Redis (RAM-bound, scaled vertically) with a replica in another AZ,
# encrypted at rest and in transit, AUTH token required. noeviction: the list is a queue,
# an evicted key would be lost events.

resource "aws_elasticache_subnet_group" "this" {
  count      = local.uses_redis ? 1 : 0
  name       = "${local.prefix}-redis"
  subnet_ids = aws_subnet.data[*].id
}

resource "aws_elasticache_parameter_group" "queue" {
  count  = local.uses_redis ? 1 : 0
  name   = "${local.prefix}-queue"
  family = "redis7"
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

resource "random_password" "redis" {
  length  = 48
  special = false
}

resource "aws_elasticache_replication_group" "this" {
  count                      = local.uses_redis ? 1 : 0
  replication_group_id       = "${var.name}-${var.role}-redis"
  description                = "evpipe stage-2 queue"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  parameter_group_name       = aws_elasticache_parameter_group.queue[0].name
  subnet_group_name          = aws_elasticache_subnet_group.this[0].name
  security_group_ids         = [aws_security_group.data.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  snapshot_retention_limit   = 7
  tags                       = local.tags
}
