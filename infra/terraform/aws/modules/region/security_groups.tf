# Each tier admits only the tier above it:
#   internet --443--> alb --8080--> app --(9096/9098, 5432, 6379, 8443/9440)--> data
# The only 0.0.0.0/0 ingress in the module is the ALB's HTTPS listener.

resource "aws_security_group" "alb" {
  name        = "${local.prefix}-alb"
  description = "Public ALB: HTTPS from the internet only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-alb", "evpipe/tier" = "public" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_app" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To gateway pods only"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_security_group" "app" {
  name        = "${local.prefix}-app"
  description = "App tier (EKS nodes and pods): gateway traffic from the ALB only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-app", "evpipe/tier" = "app" })
}

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  security_group_id            = aws_security_group.app.id
  description                  = "Gateway HTTP from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "app_from_app" {
  security_group_id            = aws_security_group.app.id
  description                  = "Node-to-node and pod-to-pod inside the app tier (NetworkPolicies narrow it)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_vpc_security_group_egress_rule" "app_out" {
  security_group_id = aws_security_group.app.id
  description       = "Out through NAT (image pulls, STS) and to the data tier"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "data" {
  name        = "${local.prefix}-data"
  description = "Data tier (MSK, RDS, ElastiCache, ClickHouse): app tier only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-data", "evpipe/tier" = "data" })
}

resource "aws_vpc_security_group_ingress_rule" "data_from_app" {
  for_each = {
    kafka_scram      = 9096
    kafka_iam        = 9098
    postgres         = 5432
    redis            = 6379
    clickhouse_https = 8443
    clickhouse_tls   = 9440
  }
  security_group_id            = aws_security_group.data.id
  description                  = "${each.key} from the app tier"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_vpc_security_group_ingress_rule" "data_from_data" {
  security_group_id            = aws_security_group.data.id
  description                  = "Replication inside the data tier (MSK brokers, Redis replicas)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.data.id
}

resource "aws_vpc_security_group_egress_rule" "data_out" {
  security_group_id = aws_security_group.data.id
  description       = "Inside the VPC only"
  ip_protocol       = "-1"
  cidr_ipv4         = var.vpc_cidr
}
