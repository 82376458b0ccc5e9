# The app tier: an EKS cluster whose nodes and pods live in the private app subnets, with
# two node groups matching the seeds' resource profiles (API: CPU; workers: CPU + network).

resource "aws_iam_role" "eks_cluster" {
  name = "${local.prefix}-eks-cluster"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "eks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "eks_cluster" {
  role       = aws_iam_role.eks_cluster.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_eks_cluster" "this" {
  name     = local.prefix
  version  = var.kubernetes_version
  role_arn = aws_iam_role.eks_cluster.arn
  vpc_config {
    subnet_ids              = aws_subnet.app[*].id
    security_group_ids      = [aws_security_group.app.id]
    endpoint_private_access = true
    # The API server is reached from CI through the private endpoint (runner in the VPC or VPN).
    endpoint_public_access = false
  }
  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.data.arn
    }
  }
  enabled_cluster_log_types = ["api", "audit", "authenticator"]
  tags                      = local.tags
  depends_on                = [aws_iam_role_policy_attachment.eks_cluster]
}

resource "aws_iam_role" "eks_node" {
  name = "${local.prefix}-eks-node"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "eks_node" {
  for_each = toset([
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ])
  role       = aws_iam_role.eks_node.name
  policy_arn = each.value
}

# Nodes carry the app-tier security group (what the data tier admits) besides EKS's own.
resource "aws_launch_template" "node" {
  name_prefix            = "${local.prefix}-node-"
  vpc_security_group_ids = [aws_eks_cluster.this.vpc_config[0].cluster_security_group_id, aws_security_group.app.id]
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 50
      volume_type = "gp3"
      encrypted   = true
      kms_key_id  = aws_kms_key.data.arn
    }
  }
  tags = local.tags
}

resource "aws_eks_node_group" "pool" {
  for_each = {
    compute = { types = var.gateway_node_instance_types, size = var.gateway_nodes }
    network = { types = var.consumer_node_instance_types, size = var.consumer_nodes }
  }
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${local.prefix}-${each.key}"
  node_role_arn   = aws_iam_role.eks_node.arn
  subnet_ids      = aws_subnet.app[*].id
  instance_types  = each.value.types
  labels          = { "evpipe.io/node-pool" = each.key }
  scaling_config {
    min_size     = each.value.size.min
    desired_size = each.value.size.desired
    max_size     = each.value.size.max
  }
  update_config {
    max_unavailable = 1
  }
  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }
  tags       = local.tags
  depends_on = [aws_iam_role_policy_attachment.eks_node]
  lifecycle {
    # The cluster autoscaler (or Karpenter) owns the node count once running.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

# IRSA: pods assume IAM roles through their service account, no static keys anywhere.
resource "aws_iam_openid_connect_provider" "eks" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
  tags            = local.tags
}

# The VPC CNI enforces the Kubernetes NetworkPolicies (infra/k8s/base/networkpolicies.yaml);
# without this flag they would be accepted and silently ignored.
resource "aws_eks_addon" "vpc_cni" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "vpc-cni"
  resolve_conflicts_on_update = "OVERWRITE"
  configuration_values        = jsonencode({ enableNetworkPolicy = "true" })
  tags                        = local.tags
}
