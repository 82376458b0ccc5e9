# The only public entry point. The gateway pods register themselves in the target group
# through the AWS Load Balancer Controller's TargetGroupBinding (infra/k8s/base).

resource "aws_lb" "gateway" {
  name                       = substr("${var.name}-${var.role}-gw", 0, 32)
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  idle_timeout               = 60
  enable_deletion_protection = var.role == "primary"
  tags                       = local.tags
}

resource "aws_lb_target_group" "gateway" {
  name        = substr("${var.name}-${var.role}-gw", 0, 32)
  target_type = "ip"
  protocol    = "HTTP"
  port        = 8080
  vpc_id      = aws_vpc.this.id
  # Matches the pods' preStop sleep (15 s): deregistration completes before SIGTERM.
  deregistration_delay = 15
  health_check {
    path                = "/readyz"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

# /metrics is for Prometheus inside the cluster, not for the internet.
resource "aws_lb_listener_rule" "hide_metrics" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10
  action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }
  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }
}
