# Source: 1.4 モデルのシリアライゼーション — 「TorchScript」, torchscript_export.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# torchscript_export.py
import torch
import torch.nn as nn

class SimpleNN(nn.Module):
    def __init__(self):
        super(SimpleNN, self).__init__()
        self.fc1 = nn.Linear(4, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        return x

model = SimpleNN()
model.eval()

# TorchScript変換(トレーシング)
example_input = torch.randn(1, 4)
traced_model = torch.jit.trace(model, example_input)

# 保存
traced_model.save("iris_torchscript.pt")

# 読み込みと推論
loaded_model = torch.jit.load("iris_torchscript.pt")
test_input = torch.tensor([[5.1, 3.5, 1.4, 0.2]])
with torch.no_grad():
    output = loaded_model(test_input)
print(f"TorchScript推論結果: {output}")
